#include "buffer/wal_write_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace gw::buffer {
namespace {

constexpr int kFrameHeader = 24;  // a WAL frame's header; bytes 4–7: database size if a commit

std::atomic<std::uint64_t> g_requested{0}, g_written{0};
sqlite3_vfs* g_base = nullptr;  // the default VFS this one wraps
sqlite3_vfs g_vfs{};
const char* g_name = nullptr;

/// A WAL file: our header, then the default VFS's file (szOsFile covers both).
struct WalFile {
  sqlite3_file base;  // pMethods = &kWalMethods
  sqlite3_file* real;
  unsigned char* run;  // frames not yet written (malloc'd on first use)
  sqlite3_int64 run_offset;
  std::size_t run_size;
  bool after_header;  // the last write was a frame header: its page comes next
  bool commit;        // that header is a commit frame's
};
static_assert(sizeof(WalFile) % 8 == 0);

WalFile* walOf(sqlite3_file* f) { return reinterpret_cast<WalFile*>(f); }

int writeRun(WalFile* w) {
  if (w->run_size == 0) return SQLITE_OK;
  const int rc =
      w->real->pMethods->xWrite(w->real, w->run, static_cast<int>(w->run_size), w->run_offset);
  g_written.fetch_add(1, std::memory_order_relaxed);
  w->run_size = 0;
  w->after_header = false;
  return rc;
}

int walClose(sqlite3_file* f) {
  WalFile* w = walOf(f);
  const int rc = writeRun(w);
  std::free(w->run);
  w->run = nullptr;
  const int rc2 = w->real->pMethods->xClose(w->real);
  return rc != SQLITE_OK ? rc : rc2;
}

int walRead(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  WalFile* w = walOf(f);
  if (const int rc = writeRun(w); rc != SQLITE_OK) return rc;
  return w->real->pMethods->xRead(w->real, buf, amt, off);
}

int walWrite(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  WalFile* w = walOf(f);
  g_requested.fetch_add(1, std::memory_order_relaxed);
  const auto n = static_cast<std::size_t>(amt);
  const bool extends =
      w->run_size > 0 && off == w->run_offset + static_cast<sqlite3_int64>(w->run_size);
  const bool header = amt == kFrameHeader;
  const bool page = !header && w->after_header && extends;
  // Held back: a frame header, and the page that follows it, extending the run.
  if ((!header && !page) || (w->run_size > 0 && !extends) || w->run_size + n > kWalWriteRun) {
    if (const int rc = writeRun(w); rc != SQLITE_OK) return rc;
  }
  if (!header && !page) {  // the WAL header, a rewritten page or checksum, a padding part
    g_written.fetch_add(1, std::memory_order_relaxed);
    return w->real->pMethods->xWrite(w->real, buf, amt, off);
  }
  if (w->run == nullptr) {
    w->run = static_cast<unsigned char*>(std::malloc(kWalWriteRun));
    if (w->run == nullptr) return SQLITE_IOERR_NOMEM;
  }
  if (n > kWalWriteRun) {  // a page larger than the run: never with the journal's 4 KiB pages
    g_written.fetch_add(1, std::memory_order_relaxed);
    return w->real->pMethods->xWrite(w->real, buf, amt, off);
  }
  if (w->run_size == 0) w->run_offset = off;
  std::memcpy(w->run + w->run_size, buf, n);
  w->run_size += n;
  if (header) {
    const auto* b = static_cast<const unsigned char*>(buf);
    w->commit = (b[4] | b[5] | b[6] | b[7]) != 0;
    w->after_header = true;
    return SQLITE_OK;
  }
  // A page: the frame is complete. The commit frame's run is written now, before SQLite
  // publishes the frames in the WAL index and before the COMMIT returns.
  w->after_header = false;
  return w->commit ? writeRun(w) : SQLITE_OK;
}

/// A method that must see the file as it is: the held run is written first, then the default
/// VFS's method runs (truncate, sync, size, lock, unlock, file control).
template <auto Method, class... Args>
int flushThen(sqlite3_file* f, Args... args) {
  WalFile* w = walOf(f);
  if (const int rc = writeRun(w); rc != SQLITE_OK) return rc;
  return (w->real->pMethods->*Method)(w->real, args...);
}

int walCheckReservedLock(sqlite3_file* f, int* out) {
  WalFile* w = walOf(f);
  return w->real->pMethods->xCheckReservedLock(w->real, out);
}

int walSectorSize(sqlite3_file* f) {
  WalFile* w = walOf(f);
  return w->real->pMethods->xSectorSize(w->real);
}

int walDeviceCharacteristics(sqlite3_file* f) {
  WalFile* w = walOf(f);
  return w->real->pMethods->xDeviceCharacteristics(w->real);
}

// SQLite maps the WAL index through the database file, never the WAL; these only forward.
int walShmMap(sqlite3_file* f, int page, int size, int extend, void volatile** p) {
  WalFile* w = walOf(f);
  if (w->real->pMethods->iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return w->real->pMethods->xShmMap(w->real, page, size, extend, p);
}

int walShmLock(sqlite3_file* f, int offset, int n, int flags) {
  WalFile* w = walOf(f);
  if (w->real->pMethods->iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  return w->real->pMethods->xShmLock(w->real, offset, n, flags);
}

void walShmBarrier(sqlite3_file* f) {
  WalFile* w = walOf(f);
  if (w->real->pMethods->iVersion >= 2) w->real->pMethods->xShmBarrier(w->real);
}

int walShmUnmap(sqlite3_file* f, int del) {
  WalFile* w = walOf(f);
  if (w->real->pMethods->iVersion < 2) return SQLITE_OK;
  return w->real->pMethods->xShmUnmap(w->real, del);
}

int walFetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** p) {
  WalFile* w = walOf(f);
  *p = nullptr;
  if (const int rc = writeRun(w); rc != SQLITE_OK) return rc;
  if (w->real->pMethods->iVersion < 3) return SQLITE_OK;
  return w->real->pMethods->xFetch(w->real, off, amt, p);
}

int walUnfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  WalFile* w = walOf(f);
  if (w->real->pMethods->iVersion < 3) return SQLITE_OK;
  return w->real->pMethods->xUnfetch(w->real, off, p);
}

const sqlite3_io_methods kWalMethods = {3,
                                        walClose,
                                        walRead,
                                        walWrite,
                                        flushThen<&sqlite3_io_methods::xTruncate, sqlite3_int64>,
                                        flushThen<&sqlite3_io_methods::xSync, int>,
                                        flushThen<&sqlite3_io_methods::xFileSize, sqlite3_int64*>,
                                        flushThen<&sqlite3_io_methods::xLock, int>,
                                        flushThen<&sqlite3_io_methods::xUnlock, int>,
                                        walCheckReservedLock,
                                        flushThen<&sqlite3_io_methods::xFileControl, int, void*>,
                                        walSectorSize,
                                        walDeviceCharacteristics,
                                        walShmMap,
                                        walShmLock,
                                        walShmBarrier,
                                        walShmUnmap,
                                        walFetch,
                                        walUnfetch};

int vfsOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  if ((flags & SQLITE_OPEN_WAL) == 0)  // the default VFS's file in place: nothing in between
    return g_base->xOpen(g_base, name, file, flags, out_flags);
  WalFile* w = walOf(file);
  std::memset(w, 0, sizeof(WalFile));
  w->real = reinterpret_cast<sqlite3_file*>(w + 1);
  const int rc = g_base->xOpen(g_base, name, w->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (w->real->pMethods != nullptr) w->real->pMethods->xClose(w->real);
    w->base.pMethods = nullptr;
    return rc;
  }
  w->base.pMethods = &kWalMethods;
  return SQLITE_OK;
}

}  // namespace

const char* walWriteVfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    if (g_base == nullptr) return;
    g_vfs = *g_base;
    g_vfs.pNext = nullptr;
    g_vfs.zName = "gw-wal-write";
    g_vfs.szOsFile = static_cast<int>(sizeof(WalFile)) + g_base->szOsFile;
    g_vfs.xOpen = &vfsOpen;
    if (sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK) g_name = g_vfs.zName;
  });
  return g_name;
}

WalWriteCounts walWriteCounts() {
  return {g_requested.load(std::memory_order_relaxed), g_written.load(std::memory_order_relaxed)};
}

}  // namespace gw::buffer
