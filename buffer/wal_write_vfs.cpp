#include "buffer/wal_write_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace gw::buffer {
namespace {

constexpr int kFrameHeader = 24;  // a WAL frame's header; bytes 4–7: database size if a commit
constexpr int kCkptLock = 1;      // the WAL index's checkpoint lock (SQLite's WAL_CKPT_LOCK)

std::atomic<std::uint64_t> g_requested{0}, g_written{0}, g_reads_requested{0}, g_reads_made{0},
    g_db_requested{0}, g_db_written{0}, g_db_reads_requested{0}, g_db_reads_made{0};
// Read-ahead is valid only within one epoch (wal_write_vfs.h); bumped after each write or
// truncate of a WAL file and each WAL-index lock call, so that a read-ahead that began before
// any of them is discarded.
std::atomic<std::uint64_t> g_epoch{0};
sqlite3_vfs* g_base = nullptr;  // the default VFS this one wraps
sqlite3_vfs g_vfs{};
const char* g_name = nullptr;

void bumpEpoch() { g_epoch.fetch_add(1, std::memory_order_acq_rel); }

/// What a file read ahead (wal_write_vfs.h).
struct ReadAhead {
  unsigned char* buf;  // malloc'd on first use
  sqlite3_int64 offset;
  std::size_t size;  // 0: nothing held
  std::uint64_t epoch;
  sqlite3_int64 last_read;  // offset of the previous read; -1: none
};

/// A WAL file: our header, then the default VFS's file (szOsFile covers both).
struct WalFile {
  sqlite3_file base;  // pMethods = &kWalMethods
  sqlite3_file* real;
  unsigned char* run;  // frames not yet written (malloc'd on first use)
  sqlite3_int64 run_offset;
  std::size_t run_size;
  bool after_header;  // the last write was a frame header: its page comes next
  bool commit;        // that header is a commit frame's
  ReadAhead ahead;
};
static_assert(sizeof(WalFile) % 8 == 0);

/// A main database file: our header, then the default VFS's file.
struct DbFile {
  sqlite3_file base;  // pMethods = &kDbMethods
  sqlite3_file* real;
  unsigned char* run;  // consecutive pages not yet written (malloc'd on first use)
  sqlite3_int64 run_offset;
  std::size_t run_size;
  bool checkpointing;  // holds the checkpoint lock: page writes are joined
  ReadAhead ahead;
};
static_assert(sizeof(DbFile) % 8 == 0);

WalFile* walOf(sqlite3_file* f) { return reinterpret_cast<WalFile*>(f); }

/// Writes [off, off + n) of a file with `write`, then starts a new epoch. What the file itself
/// read ahead (`a`) stays valid when the write does not overlap it and nothing else began an
/// epoch since it was read (SQLite spills pages to the WAL while it reads a large table).
template <class Write>
int writeAndBump(ReadAhead& a, sqlite3_int64 off, std::size_t n, Write write) {
  const std::uint64_t before = g_epoch.load(std::memory_order_acquire);
  const int rc = write();
  const std::uint64_t after = g_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  const bool overlaps = off < a.offset + static_cast<sqlite3_int64>(a.size) &&
                        a.offset < off + static_cast<sqlite3_int64>(n);
  if (rc == SQLITE_OK && a.size > 0 && a.epoch == before && after == before + 1 && !overlaps)
    a.epoch = after;
  return rc;
}

/// A read of `real` through what it read ahead: served from it when it holds [off, off + amt)
/// and is of the current epoch; else, when the read is less than kWalReadAhead from the previous
/// one, kWalReadAhead bytes in its direction are read and kept; anything else (the first read, a
/// read far away) reads only what was asked.
int readThrough(ReadAhead& a, sqlite3_file* real, void* buf, int amt, sqlite3_int64 off,
                std::atomic<std::uint64_t>& requested, std::atomic<std::uint64_t>& made) {
  requested.fetch_add(1, std::memory_order_relaxed);
  const auto n = static_cast<std::size_t>(amt);
  if (a.size > 0 && a.epoch == g_epoch.load(std::memory_order_acquire) && off >= a.offset &&
      static_cast<std::size_t>(off - a.offset) + n <= a.size) {
    std::memcpy(buf, a.buf + (off - a.offset), n);
    a.last_read = off;
    return SQLITE_OK;
  }
  const auto window = static_cast<sqlite3_int64>(kWalReadAhead);
  const bool forward = a.last_read >= 0 && off > a.last_read && off - a.last_read < window;
  const bool backward = a.last_read >= 0 && off < a.last_read && a.last_read - off < window;
  a.last_read = off;
  a.size = 0;
  made.fetch_add(1, std::memory_order_relaxed);
  if ((!forward && !backward) || n >= kWalReadAhead)
    return real->pMethods->xRead(real, buf, amt, off);
  if (a.buf == nullptr) {
    a.buf = static_cast<unsigned char*>(std::malloc(kWalReadAhead));
    if (a.buf == nullptr) return real->pMethods->xRead(real, buf, amt, off);
  }
  // Backwards (SQLite writes a commit's pages in page order, and pages taken from the free list
  // come in descending order, so rows in order can be frames in descending order): the window
  // ends with this read.
  const sqlite3_int64 start =
      forward ? off : std::max<sqlite3_int64>(0, off + static_cast<sqlite3_int64>(n) - window);
  // The epoch before the read: a write that ends after this load discards what is read here.
  const std::uint64_t epoch = g_epoch.load(std::memory_order_acquire);
  std::size_t valid = kWalReadAhead;
  int rc = real->pMethods->xRead(real, a.buf, static_cast<int>(kWalReadAhead), start);
  if (rc == SQLITE_IOERR_SHORT_READ) {  // near the end of the file: what is there
    sqlite3_int64 size = 0;
    valid = real->pMethods->xFileSize(real, &size) == SQLITE_OK && size > start
                ? std::min(kWalReadAhead, static_cast<std::size_t>(size - start))
                : 0;
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) return rc;
  if (static_cast<std::size_t>(off - start) + n > valid)
    return real->pMethods->xRead(real, buf, amt, off);  // as without it
  std::memcpy(buf, a.buf + (off - start), n);
  a.offset = start;
  a.size = valid;
  a.epoch = epoch;
  return SQLITE_OK;
}

int writeRun(WalFile* w) {
  if (w->run_size == 0) return SQLITE_OK;
  const int rc = writeAndBump(w->ahead, w->run_offset, w->run_size, [w] {
    return w->real->pMethods->xWrite(w->real, w->run, static_cast<int>(w->run_size), w->run_offset);
  });
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
  std::free(w->ahead.buf);
  w->ahead.buf = nullptr;
  const int rc2 = w->real->pMethods->xClose(w->real);
  return rc != SQLITE_OK ? rc : rc2;
}

int walRead(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  WalFile* w = walOf(f);
  if (const int rc = writeRun(w); rc != SQLITE_OK) return rc;
  return readThrough(w->ahead, w->real, buf, amt, off, g_reads_requested, g_reads_made);
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
    return writeAndBump(w->ahead, off, n,
                        [&] { return w->real->pMethods->xWrite(w->real, buf, amt, off); });
  }
  if (w->run == nullptr) {
    w->run = static_cast<unsigned char*>(std::malloc(kWalWriteRun));
    if (w->run == nullptr) return SQLITE_IOERR_NOMEM;
  }
  if (n > kWalWriteRun) {  // a page larger than the run: never with the journal's pages
    g_written.fetch_add(1, std::memory_order_relaxed);
    return writeAndBump(w->ahead, off, n,
                        [&] { return w->real->pMethods->xWrite(w->real, buf, amt, off); });
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

int walTruncate(sqlite3_file* f, sqlite3_int64 size) {
  const int rc = flushThen<&sqlite3_io_methods::xTruncate, sqlite3_int64>(f, size);
  bumpEpoch();
  return rc;
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
                                        walTruncate,
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

DbFile* dbOf(sqlite3_file* f) { return reinterpret_cast<DbFile*>(f); }

int dbWriteRun(DbFile* d) {
  if (d->run_size == 0) return SQLITE_OK;
  const int rc = writeAndBump(d->ahead, d->run_offset, d->run_size, [d] {
    return d->real->pMethods->xWrite(d->real, d->run, static_cast<int>(d->run_size), d->run_offset);
  });
  g_db_written.fetch_add(1, std::memory_order_relaxed);
  d->run_size = 0;
  return rc;
}

int dbClose(sqlite3_file* f) {
  DbFile* d = dbOf(f);
  const int rc = dbWriteRun(d);
  std::free(d->run);
  d->run = nullptr;
  std::free(d->ahead.buf);
  d->ahead.buf = nullptr;
  const int rc2 = d->real->pMethods->xClose(d->real);
  return rc != SQLITE_OK ? rc : rc2;
}

int dbWrite(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  DbFile* d = dbOf(f);
  const auto n = static_cast<std::size_t>(amt);
  if (!d->checkpointing || n > kDbWriteRun) {
    if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
    return writeAndBump(d->ahead, off, n,
                        [&] { return d->real->pMethods->xWrite(d->real, buf, amt, off); });
  }
  g_db_requested.fetch_add(1, std::memory_order_relaxed);
  const bool extends =
      d->run_size > 0 && off == d->run_offset + static_cast<sqlite3_int64>(d->run_size);
  if ((d->run_size > 0 && !extends) || d->run_size + n > kDbWriteRun) {
    if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
  }
  if (d->run == nullptr) {
    d->run = static_cast<unsigned char*>(std::malloc(kDbWriteRun));
    if (d->run == nullptr) {
      g_db_written.fetch_add(1, std::memory_order_relaxed);
      return writeAndBump(d->ahead, off, n,
                          [&] { return d->real->pMethods->xWrite(d->real, buf, amt, off); });
    }
  }
  if (d->run_size == 0) d->run_offset = off;
  std::memcpy(d->run + d->run_size, buf, n);
  d->run_size += n;
  return SQLITE_OK;
}

int dbRead(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  DbFile* d = dbOf(f);
  if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
  return readThrough(d->ahead, d->real, buf, amt, off, g_db_reads_requested, g_db_reads_made);
}

int dbTruncate(sqlite3_file* f, sqlite3_int64 size) {
  DbFile* d = dbOf(f);
  if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
  const int rc = d->real->pMethods->xTruncate(d->real, size);
  bumpEpoch();
  return rc;
}

/// A method that must see the file as it is: the held pages are written first.
template <auto Method, class... Args>
int dbFlushThen(sqlite3_file* f, Args... args) {
  DbFile* d = dbOf(f);
  if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
  return (d->real->pMethods->*Method)(d->real, args...);
}

/// A method that only forwards.
template <auto Method, class... Args>
auto dbForward(sqlite3_file* f, Args... args) {
  DbFile* d = dbOf(f);
  return (d->real->pMethods->*Method)(d->real, args...);
}

int dbShmMap(sqlite3_file* f, int page, int size, int extend, void volatile** p) {
  DbFile* d = dbOf(f);
  if (d->real->pMethods->iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return d->real->pMethods->xShmMap(d->real, page, size, extend, p);
}

// Every lock change: the held pages are written first (a checkpoint publishes what it copied
// before it lets readers of the database file in), and read-ahead is discarded.
int dbShmLock(sqlite3_file* f, int offset, int n, int flags) {
  DbFile* d = dbOf(f);
  if (d->real->pMethods->iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
  const int rc = d->real->pMethods->xShmLock(d->real, offset, n, flags);
  bumpEpoch();
  if (offset == kCkptLock && n == 1) {
    if ((flags & SQLITE_SHM_UNLOCK) != 0)
      d->checkpointing = false;
    else if (rc == SQLITE_OK && (flags & SQLITE_SHM_EXCLUSIVE) != 0)
      d->checkpointing = true;
  }
  return rc;
}

void dbShmBarrier(sqlite3_file* f) {
  DbFile* d = dbOf(f);
  if (d->real->pMethods->iVersion >= 2) d->real->pMethods->xShmBarrier(d->real);
}

int dbShmUnmap(sqlite3_file* f, int del) {
  DbFile* d = dbOf(f);
  if (d->real->pMethods->iVersion < 2) return SQLITE_OK;
  return d->real->pMethods->xShmUnmap(d->real, del);
}

int dbFetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** p) {
  DbFile* d = dbOf(f);
  *p = nullptr;
  if (const int rc = dbWriteRun(d); rc != SQLITE_OK) return rc;
  if (d->real->pMethods->iVersion < 3) return SQLITE_OK;
  return d->real->pMethods->xFetch(d->real, off, amt, p);
}

int dbUnfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  DbFile* d = dbOf(f);
  if (d->real->pMethods->iVersion < 3) return SQLITE_OK;
  return d->real->pMethods->xUnfetch(d->real, off, p);
}

const sqlite3_io_methods kDbMethods = {3,
                                       dbClose,
                                       dbRead,
                                       dbWrite,
                                       dbTruncate,
                                       dbFlushThen<&sqlite3_io_methods::xSync, int>,
                                       dbFlushThen<&sqlite3_io_methods::xFileSize, sqlite3_int64*>,
                                       dbFlushThen<&sqlite3_io_methods::xLock, int>,
                                       dbFlushThen<&sqlite3_io_methods::xUnlock, int>,
                                       dbForward<&sqlite3_io_methods::xCheckReservedLock, int*>,
                                       dbFlushThen<&sqlite3_io_methods::xFileControl, int, void*>,
                                       dbForward<&sqlite3_io_methods::xSectorSize>,
                                       dbForward<&sqlite3_io_methods::xDeviceCharacteristics>,
                                       dbShmMap,
                                       dbShmLock,
                                       dbShmBarrier,
                                       dbShmUnmap,
                                       dbFetch,
                                       dbUnfetch};

int vfsOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  if ((flags & SQLITE_OPEN_MAIN_DB) != 0) {
    DbFile* d = dbOf(file);
    std::memset(d, 0, sizeof(DbFile));
    d->real = reinterpret_cast<sqlite3_file*>(d + 1);
    d->ahead.last_read = -1;
    const int rc = g_base->xOpen(g_base, name, d->real, flags, out_flags);
    if (rc != SQLITE_OK) {
      if (d->real->pMethods != nullptr) d->real->pMethods->xClose(d->real);
      d->base.pMethods = nullptr;
      return rc;
    }
    d->base.pMethods = &kDbMethods;
    return SQLITE_OK;
  }
  if ((flags & SQLITE_OPEN_WAL) == 0)  // the default VFS's file in place: nothing in between
    return g_base->xOpen(g_base, name, file, flags, out_flags);
  WalFile* w = walOf(file);
  std::memset(w, 0, sizeof(WalFile));
  w->real = reinterpret_cast<sqlite3_file*>(w + 1);
  w->ahead.last_read = -1;
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
    g_vfs.szOsFile = static_cast<int>(std::max(sizeof(WalFile), sizeof(DbFile))) + g_base->szOsFile;
    g_vfs.xOpen = &vfsOpen;
    if (sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK) g_name = g_vfs.zName;
  });
  return g_name;
}

WalWriteCounts walWriteCounts() {
  return {g_requested.load(std::memory_order_relaxed),
          g_written.load(std::memory_order_relaxed),
          g_reads_requested.load(std::memory_order_relaxed),
          g_reads_made.load(std::memory_order_relaxed),
          g_db_requested.load(std::memory_order_relaxed),
          g_db_written.load(std::memory_order_relaxed),
          g_db_reads_requested.load(std::memory_order_relaxed),
          g_db_reads_made.load(std::memory_order_relaxed)};
}

}  // namespace gw::buffer
