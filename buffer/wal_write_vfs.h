// A thin SQLite VFS over the default one (unix) that writes a commit's WAL frames with one
// pwrite instead of two per frame (issue 16: system calls per reading). SQLite writes each
// frame as a 24-byte header and then the page; this VFS keeps a run of consecutive frames in
// memory and writes it when the frame that commits the transaction has been added, before
// SQLite makes the frames visible to other connections (the WAL index is updated after all the
// frames are written) and before the commit returns, so what is on the disk when a COMMIT has
// returned, and what the WAL sync (wal_syncer.h) then covers, is the same as without it. The
// run is also written before any other call on the file (read, sync, size, truncate, lock,
// file control, close), before any write that does not extend it, and when it would pass
// kWalWriteRun bytes. Files other than the WAL are the default VFS's files, untouched.
//
// Threading: a WAL file belongs to one connection, which SQLite uses from one thread at a time
// (the journal's connections are SQLITE_OPEN_NOMUTEX and owned by one thread each).
#pragma once

#include <cstddef>
#include <cstdint>

namespace gw::buffer {

/// The largest run of frames held before it is written (a commit of more is written in parts):
/// below 128 KiB, because the unix VFS writes at most 0x1ffff bytes per pwrite and fails a
/// larger write's remainder of exactly 128 KiB as "disk full".
inline constexpr std::size_t kWalWriteRun = 0x1ffff;

/// The VFS's name for sqlite3_open_v2, registered (not as the default) on the first call;
/// nullptr when it could not be registered (then the default VFS is used, as before).
const char* walWriteVfs();

/// Process-wide counts of the WAL writes SQLite asked for and those made to the file.
struct WalWriteCounts {
  std::uint64_t requested = 0;
  std::uint64_t written = 0;
};
WalWriteCounts walWriteCounts();

}  // namespace gw::buffer
