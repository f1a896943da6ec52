// A thin SQLite VFS over the default one (unix) that writes a commit's WAL frames with one
// pwrite instead of two per frame (issue 16: system calls per reading). SQLite writes each
// frame as a 24-byte header and then the page; this VFS keeps a run of consecutive frames in
// memory and writes it when the frame that commits the transaction has been added, before
// SQLite makes the frames visible to other connections (the WAL index is updated after all the
// frames are written) and before the commit returns, so what is on the disk when a COMMIT has
// returned, and what the WAL sync (wal_syncer.h) then covers, is the same as without it. The
// run is also written before any other call on the file (read, sync, size, truncate, lock,
// file control, close), before any write that does not extend it, and when it would pass
// kWalWriteRun bytes. Files other than the WAL and the main database are the default VFS's
// files, untouched.
//
// Reads of the WAL and of the database file (issue 16: the event loop's pread64): a read less
// than kWalReadAhead from the previous one reads kWalReadAhead bytes at once, in the direction
// it went, and serves the next reads from them. SQLite reads pages in order when it walks a
// B-tree whose pages are in the WAL or the database file (emptying a segment table frees every page
// of it, and must read them all to find them; a sink reads a segment's rows in order) and when a
// checkpoint copies frames. What was read ahead is used only while nothing can have changed it:
// every write or truncate through any file of this VFS, and every WAL-index lock call of any
// connection through it (each read transaction begins with one), starts an epoch that discards it.
// Within a read transaction the frames SQLite may read (up to its snapshot's last frame) are never
// rewritten, by this process or another one (a writer elsewhere only appends past them, or restarts
// the WAL once no reader uses it), and neither are the database pages it reads from the file (a
// checkpoint copies no frame past the oldest reader's snapshot); bytes read past those are never
// asked for before the next lock call.
//
// Database file writes of a checkpoint: while a connection through this VFS holds the WAL's
// checkpoint lock, its writes of consecutive pages to the database file are joined into one
// write of up to kDbWriteRun bytes. What is held is written before any other call on the file
// (sync, read, size, truncate, lock, file control, close) and before any WAL-index lock change,
// so before the checkpoint syncs the file and before it publishes what it copied (readers that
// read the database file instead of the WAL wait for the checkpoint's lock on read mark 0).
//
// Threading: a file belongs to one connection, which SQLite uses from one thread at a time
// (the journal's connections are SQLITE_OPEN_NOMUTEX and owned by one thread each); the epoch is
// an atomic shared by all.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gw::buffer {

/// The largest run of frames held before it is written (a commit of more is written in parts):
/// below 128 KiB, because the unix VFS writes at most 0x1ffff bytes per pwrite and fails a
/// larger write's remainder of exactly 128 KiB as "disk full".
inline constexpr std::size_t kWalWriteRun = 0x1ffff;
/// Bytes read at once by a forward read of the WAL (31 frames of a 2 KiB page).
inline constexpr std::size_t kWalReadAhead = 64 * 1024;
/// The largest run of database pages a checkpoint writes at once.
inline constexpr std::size_t kDbWriteRun = 64 * 1024;

/// The VFS's name for sqlite3_open_v2, registered (not as the default) on the first call;
/// nullptr when it could not be registered (then the default VFS is used, as before).
const char* walWriteVfs();

/// Process-wide counts of the writes and reads SQLite asked for and those made to the files.
struct WalWriteCounts {
  std::uint64_t requested = 0;  // WAL writes
  std::uint64_t written = 0;
  std::uint64_t reads_requested = 0;  // WAL reads
  std::uint64_t reads_made = 0;
  std::uint64_t db_writes_requested = 0;  // database file writes while checkpointing
  std::uint64_t db_writes_made = 0;
  std::uint64_t db_reads_requested = 0;  // database file reads
  std::uint64_t db_reads_made = 0;
};
WalWriteCounts walWriteCounts();

}  // namespace gw::buffer
