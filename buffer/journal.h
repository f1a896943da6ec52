// The SQLite journal: the one source of truth every sink reads from (design: "Journal").
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "buffer/dead_letters.h"
#include "core/reading.h"
#include "core/time.h"

namespace gw::buffer {

/// How long a row may wait in the journal is measured from its COMMIT (the gateway's wall
/// clock), never from its event time: a sensor whose clock says 1970 must not have its readings
/// dropped as "old". Commit times are kept per group of commits, to `kCommitTimeGranularity`.
inline constexpr Nanos kCommitTimeGranularity = 10 * kNanosPerSecond;

/// buffer.synchronous: when a commit is on stable storage (SQLite's `PRAGMA synchronous`, WAL
/// mode).
enum class Synchronous {
  /// No fsync at all: a commit survives a crash of the daemon (it is in the page cache), not a
  /// power cut or kernel crash, which can lose any commit since the file was last written back.
  kOff,
  /// The WAL is fsynced only at checkpoints: survives a daemon crash; a power cut can roll
  /// back commits made since the last checkpoint (acknowledged readings lost).
  kNormal,
  /// The WAL is fsynced after every commit (one fdatasync per group commit, merged when
  /// commits come faster than the disk syncs): a commit survives a power cut once
  /// Journal::durableSeq() has reached it. What an acknowledgement promises. The sync runs on a
  /// thread of the journal, not inside the transaction (see durableSeq()).
  kFull,
};

struct JournalOptions {
  std::filesystem::path path;  ///< journal.db; its directory is created if missing
  /// buffer.max_size: cap on the pages in use (the file itself is not shrunk; freed pages are
  /// reused). 0 = no cap. Also a hard stop: at 1.25 x the cap (+1 MiB) commits fail with
  /// "database or disk is full" until enforceRetention() has made room.
  std::uint64_t max_size_bytes = 512ull << 20;
  /// buffer.max_age, by commit time (see above); rows may outlive it by up to
  /// kCommitTimeGranularity. 0 = no cap.
  Nanos max_age = 7 * 86400 * kNanosPerSecond;
  Synchronous synchronous = Synchronous::kFull;  ///< buffer.synchronous
  /// buffer.min_free: free space to keep on the journal's filesystem: min_free_bytes, or
  /// min_free_percent of the filesystem's size, the smaller of the two when both are set; 0 and
  /// 0 = no guard. Below it, enforceRetention() drops the oldest rows so that the file has free
  /// pages for the next commits and need not grow (SQLite reuses freed pages; the file never
  /// shrinks).
  std::uint64_t min_free_bytes = 0;
  unsigned min_free_percent = 0;
  /// Free and total bytes of the journal's filesystem; empty = statvfs() of its folder. Tests
  /// inject one. Returns false when unknown.
  std::function<bool(std::uint64_t& free, std::uint64_t& total)> disk_space;
  std::vector<std::string> sinks;  ///< one cursor per sink name (duplicates ignored)
  /// synchronous = kFull: WAL syncs start at least this far apart, the checkpoints' fsyncs
  /// counted (buffer.commit_interval: at most one fsync per group commit on average). 0 = a
  /// sync after every commit.
  Nanos sync_interval = 0;
  /// The WAL is checkpointed (on a thread of the journal's) once it holds this many bytes. A
  /// checkpoint copies the newest version of each page the WAL holds into journal.db, once:
  /// pages that every commit rewrites (the newest leaf, interior pages, page 1, the free-list
  /// trunk) and the pages of emptied segments that new rows reuse are copied once per
  /// checkpoint, not once per version. 64 MiB is several times the pages a steady 10,000
  /// readings/s keeps in use (issue 16: a checkpoint then copies ~0.13 pages per WAL frame
  /// instead of ~0.5 at 4 MiB). The -wal keeps this size on disk (journal_size_limit); it is
  /// given back when the disk runs low (buffer.min_free).
  std::uint64_t wal_checkpoint_bytes = 64ull << 20;
  /// Page size of a journal this creates (a power of two, 512–65536); a journal that exists
  /// keeps the page size it was created with. Issue 16: each group commit rewrites a few pages
  /// whatever its size (the newest leaf and its interior page, page 1, the free-list trunk, the
  /// windows' state row), so smaller pages write fewer bytes per commit.
  int new_page_size = 2048;
  /// Rows per segment (retention empties whole segments); 0 = by max_size, at most 65,536.
  std::uint64_t segment_rows = 0;
  /// The in-memory series table is sized for this many series up front, so that it does not
  /// rehash them all at once (a stall of ~100 ms at 100,000 series) while it fills.
  std::size_t expected_series = 0;
  /// Series ids below this are kept in memory for the journal's life (the gateway's
  /// [limits] max_series: windows, clock table and alert engine keep pointers into them). Ids
  /// from here on (a device inventing names) are kept in a cache of `series_cache` entries; the
  /// SQLite series table is the authority for the rest (issue 13: memory bounded by max_series,
  /// not by the names ever seen). Default: every series in memory.
  std::size_t pinned_series = std::numeric_limits<std::size_t>::max();
  /// Cached series past pinned_series, at least (SeriesTable::kDefaultCacheEntries, 16,384: ~3
  /// MiB with short names; see buffer/series_table.h). More only while sinks hold records of
  /// more of them.
  std::size_t series_cache = 16384;
  /// Names in `sinks` whose readers hold no record's series past the call that read it: the
  /// windows' replay point (read at start-up) and the notifiers (they send an alert record's
  /// own JSON and never look at its series). Their cursors keep no cached series in memory, so
  /// a notifier that cannot deliver for hours does not keep every name the other sinks read.
  std::vector<std::string> sinks_without_series;
  /// Rows one commit() writes at most (0 = all pending). Issue 13: a transaction's CPU grows
  /// with its rows (~4 µs each on the development VM) and runs on the event loop. Only a prefix
  /// of readings is split off, none while an alert row is pending: aggregates and alerts go with
  /// the state (putState, firing rows) of the commit that takes the last pending row, so that a
  /// crash neither loses nor duplicates a closed window or an alert. The caller commits again while
  /// pending() > 0.
  std::size_t max_commit_rows = 0;
  /// The same by time: a commit stops inserting readings (that may be split off, as above) once
  /// it took this long, checked every 32 rows. 0 = no limit.
  Nanos commit_budget = 0;
  /// Wall clock for commit times (and the moved-aside file name); tests inject one.
  /// Empty = gw::wallNow. enforceRetention's `now` must come from the same clock.
  std::function<Nanos()> clock;
};

/// Thrown by open() when the journal cannot be opened or created at all.
class JournalError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SinkBacklog {
  std::uint64_t cursor = 0;   ///< last seq the sink confirmed
  std::uint64_t backlog = 0;  ///< committed rows above the cursor
  std::uint64_t dropped = 0;  ///< rows dropped by the caps before this sink sent them
  /// Commit (wall) time of the oldest unsent row, rounded down to kCommitTimeGranularity.
  std::optional<Nanos> oldest_unsent;
};

struct JournalStats {
  std::uint64_t last_seq = 0;                ///< highest committed seq
  std::uint64_t rows = 0;                    ///< committed rows in the journal
  std::uint64_t file_bytes = 0;              ///< database + WAL size on disk
  std::uint64_t used_bytes = 0;              ///< pages in use, what max_size_bytes caps
  std::uint64_t commits = 0;                 ///< successful commit() transactions since open
  std::map<std::string, SinkBacklog> sinks;  ///< the configured sinks only
  std::optional<std::filesystem::path> moved_aside;  ///< set when a corrupt file was moved aside
  /// Times the file was pulled away under the running journal and written back (checkFile()).
  std::uint64_t restores = 0;
  /// buffer.min_free as last checked (every commit): the threshold in bytes (0 = no guard), the
  /// filesystem's free bytes, and whether it is below (the oldest unsent rows are being dropped).
  std::uint64_t min_free = 0;
  std::uint64_t disk_free = 0;
  bool low_disk = false;
};

/// Thrown by open() for a journal written by a newer iot-gateway (user_version above ours): the
/// file is left exactly as it is (not moved aside: its backlog belongs to the newer version);
/// gatewayd exits with 65 (EX_DATAERR), which the unit does not restart on.
class JournalNewerError : public JournalError {
  using JournalError::JournalError;
};

/// Readings are appended into an in-memory batch and made durable by commit() (group
/// commit: one transaction per batch). Sinks read committed rows after their cursor, and with
/// readTail() also the pending ones (see sendableSeq()).
///
/// Seqs start at 1 and are never reused, also across restarts, retention and a power cut: a
/// seq may be sent to a sink before its row is durable, so a commit reserves seqs ahead (meta
/// row 'seq_reserved', like a database sequence's cache) and a journal opened after a crash
/// goes on after the highest reservation. Seqs are contiguous except for such a gap after a
/// crash (the seqs handed out and lost with the process, and the unused rest of the
/// reservation); a clean close gives the unused reservation back. Row counts (stats(), the
/// `dropped` counts of the caps) take differences of seqs, so they count a gap as rows until
/// every sink has passed it (the first batch after the restart passes it).
/// Rows are only ever removed from the oldest end.
///
/// Sinks: each name in JournalOptions::sinks has a persisted cursor and dropped count. A new
/// name starts at the oldest row still in the journal (it gets what is buffered). A name found
/// in the file but not configured keeps its row but is ignored (logged as a notice): it holds
/// no rows back, and when configured again, rows deleted meanwhile count as dropped for it.
/// With no sink configured, rows stay until a cap removes them.
///
/// Threading: single-threaded; the pipeline's event loop owns it. Series of ids below
/// JournalOptions::pinned_series, returned by series() and pointed to by ReadingRecord, stay
/// valid and unchanged until the journal is destroyed, so another thread may read them while the
/// loop goes on. A series of a higher id is cached (issue 13): the one a ReadingRecord points to
/// stays valid and unchanged until the next call of internSeries(), series(), read(),
/// readTail(), readAlerts() or readDevice() (the calls that may read an evicted series back from
/// SQLite, and so evict another), and, for a record read with a Reader (readerOf()), until that
/// sink has confirmed (setCursor()) the record's seq. A forwarder's batch in flight is always above
/// what it confirmed, so its records stay valid on the sink's thread; a sink that is down keeps the
/// series of the records it read (its batch), whatever the other sinks read and confirm meanwhile.
/// The SQLite journal checkpoints its WAL on a thread of its own (its own connection, joined on
/// destruction); nothing of that thread is visible through this interface. With synchronous = kFull
/// another thread of its own fdatasyncs the WAL; the onDurable() callback is called on it.
class Journal {
 public:
  /// Opens or creates the journal: WAL mode, `PRAGMA quick_check`; a corrupt or unreadable
  /// file is moved aside (to `<path>.corrupt-<UTC time>`, with its -wal/-shm) and a new
  /// journal started, logged as an error; an older schema is upgraded in place. Throws
  /// JournalNewerError for a newer schema (the file untouched), JournalError when even a new
  /// journal cannot be created (permissions, disk).
  static std::unique_ptr<Journal> open(const JournalOptions& options);
  virtual ~Journal() = default;

  /// Interns a series (persisted with the next commit); the same Series gives the same id,
  /// also across restarts. Ids are dense, from 0. Past pinned_series, a series not in memory is
  /// looked up in SQLite (an index on its name): one lookup per series new to the cache.
  virtual SeriesId internSeries(const Series& series) = 0;
  /// `id` must come from internSeries() (anything else aborts: a bug). A cached id that was
  /// evicted is read back from SQLite (an error doing so aborts: there is no error to return);
  /// see "Threading" for how long the reference stays valid.
  virtual const InternedSeries& series(SeriesId id) = 0;

  /// Buffers a reading for the next commit and returns the seq it will have (the seq stays the
  /// same if a commit fails and is retried). A NaN value reads back as NaN. Memory grows with
  /// pending(); the caller bounds it (commit failures are persistent when the disk is full).
  virtual std::uint64_t append(SeriesId series, double value, Nanos event_time,
                               std::optional<Nanos> device_time, TimeReference reference) = 0;
  /// Buffers a closed window's aggregate (a record like a reading, forwarded by every sink):
  /// event time = window.start.
  virtual std::uint64_t appendAggregate(SeriesId series, const WindowStats& window) = 0;
  /// Buffers an alert event (the outbox): `json` is the alert record the notifiers and the
  /// Kafka sink send, `time`/`value` its transition time and value.
  virtual std::uint64_t appendAlert(SeriesId series, Nanos time, double value,
                                    std::string_view json) = 0;
  /// Number of appended rows not yet committed.
  virtual size_t pending() const = 0;
  /// Writes pending rows (at most JournalOptions::max_commit_rows of them: then pending() may be
  /// left above 0 after a true return), new series and cursor moves in one transaction (BEGIN
  /// IMMEDIATE, waits at most 200 ms for a lock held by another process). On failure (disk full,
  /// I/O error, lock) returns false, logs (rate-limited), and keeps everything pending for the next
  /// try. Returns true at once when there is nothing to write.
  virtual bool commit() = 0;

  /// Identifies a sink that reads records and holds them past the call (a forwarder: its batch
  /// is in flight on its worker): readerOf() once, then each read(), readTail() or readAlerts()
  /// of that sink passes it. A cached series (past pinned_series) then stays in memory until
  /// that sink itself confirms the records it read (see "Threading"), so a sink that is down
  /// keeps only what it read, not what the others read meanwhile.
  using Reader = std::uint32_t;
  /// A read that holds nothing past the call (the tail view, the windows' replay, status).
  static constexpr Reader kNoReader = std::numeric_limits<Reader>::max();
  /// The reader of sink `name`; kNoReader for a name not in JournalOptions::sinks or in
  /// sinks_without_series. Stable for the journal's life.
  virtual Reader readerOf(std::string_view sink) const = 0;

  /// Reads up to `limit` committed records (readings, aggregates, alerts) with seq > `after`, in
  /// seq order, into `out` (resized to what was read; its records are reused). On a read
  /// error, logs and returns the rows read so far. `reader`: see readerOf().
  virtual void read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                    Reader reader) = 0;
  void read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) {
    read(after, limit, out, kNoReader);
  }

  /// Like read(), and past the committed rows also the pending ones (appended, not yet
  /// committed), up to sendableSeq(): what a sink reads, so that a record need not wait for its
  /// group commit and sync. Returns the seq through which the read is complete (every record
  /// with `after` < seq <= it is in `out`; a gap of seqs left by a crash is passed over), which
  /// is `after` when nothing could be read.
  virtual std::uint64_t readTail(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                                 Reader reader) = 0;
  std::uint64_t readTail(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) {
    return readTail(after, limit, out, kNoReader);
  }
  /// The highest seq that may be sent to a sink: appended (committed or pending) and within the
  /// seq reservation of a durable commit, so that a power cut cannot make a later start give the
  /// seq to another record. >= durableSeq(). What a sink confirmed beyond durableSeq() must not
  /// be persisted as its cursor (setCursor() takes durable seqs only).
  virtual std::uint64_t sendableSeq() const = 0;

  /// Like read(), but only alert records (an index keeps this cheap whatever the backlog of
  /// readings): what a notifier delivers from.
  virtual void readAlerts(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                          Reader reader) = 0;
  void readAlerts(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) {
    readAlerts(after, limit, out, kNoReader);
  }
  /// The latest `limit` committed readings (not aggregates or alerts) of every series of
  /// `device` with seq > `after`, in seq order, into `out`. Looks at the newest `scan` rows
  /// only, so a device silent for long costs a bounded read. For `gatewayctl tail`.
  virtual void readDevice(std::string_view device, std::uint64_t after, size_t limit,
                          std::uint64_t scan, std::vector<ReadingRecord>& out) = 0;
  /// The highest committed seq.
  virtual std::uint64_t lastSeq() const = 0;
  /// The highest seq on stable storage, <= lastSeq(): what may be acknowledged to a sender and
  /// forwarded to a sink (a row forwarded and then lost in a power cut would have its seq
  /// reused). With synchronous = kFull, commit() returns once its transaction is written, before
  /// it is synced: a thread of the journal fdatasyncs the WAL (at most one sync at a time;
  /// commits made while one runs are covered by the next) and then moves this on and calls the
  /// onDurable() callback. With kNormal and kOff it is lastSeq() (nothing more to wait for).
  virtual std::uint64_t durableSeq() const = 0;
  /// `fn` is called on the journal's sync thread after each sync that moved durableSeq() on,
  /// with its new value (once per sync, not per commit). It must only hand the news over to the
  /// owner's thread (post to the event loop). Set it before the first commit; never called with
  /// kNormal or kOff.
  virtual void onDurable(std::function<void(std::uint64_t seq)> fn) = 0;
  /// Blocks until everything committed is on stable storage and returns durableSeq(): for a
  /// shutdown, after the last commit. Destroying the journal does the same.
  virtual std::uint64_t syncNow() = 0;

  /// A small named value persisted with the next commit (in the same transaction as the
  /// records appended before it), e.g. the windows' watermark. Unchanged values write nothing.
  virtual void putState(std::string_view key, std::string value) = 0;
  /// The value last put (committed or not), or nullopt.
  virtual std::optional<std::string> state(std::string_view key) const = 0;

  /// The sink's cursor; 0 for a name that is not configured.
  virtual std::uint64_t cursor(std::string_view sink) const = 0;
  /// Moves a sink's cursor forward; written with the next commit. A smaller seq is ignored
  /// (the caps may have moved the cursor past rows the sink was still sending). An unknown
  /// sink name is logged and ignored; a seq above the last committed one aborts (a bug).
  virtual void setCursor(std::string_view sink, std::uint64_t seq) = 0;

  /// Deletes the segments (JournalOptions::segment_rows) whose rows every sink has confirmed,
  /// whole, then drops rows committed before `now - max_age`, then, when the pages in use
  /// exceed max_size, drops the oldest whole segments until under 90% of it, then, below
  /// min_free on the filesystem, drops the oldest whole segments until the file has room (within
  /// the newest segment, when it is the only one, `step` rows at a time). Each of the three
  /// capping phases runs at most 16 transactions per call, so the loop never stalls for long;
  /// the rest waits for the next call.
  /// Rows dropped before a sink confirmed them move its cursor past them and add to its
  /// `dropped` count (persisted), and are logged as an error. While rows are pending, the
  /// confirmed segments are left to the next commit(), which empties them in the same
  /// transaction as its rows (no synced transaction of their own); they are not counted here.
  /// Also asks for a WAL checkpoint when the WAL has grown (checkpoints run on a thread of the
  /// journal's own, with its own connection). Returns the number of rows removed. Call it on a
  /// timer with the wall time.
  virtual std::uint64_t enforceRetention(Nanos now, size_t step = 10000) = 0;

  virtual JournalStats stats() const = 0;

  /// Keeps a piece of bad input in the dead-letter table (buffer/dead_letters.h), written with
  /// the next commit; the table is capped (kDeadLetterMaxRows, kDeadLetterMaxBytes), oldest
  /// deleted first.
  virtual void addDeadLetter(DeadLetter letter) = 0;
  /// The newest `limit` dead letters, newest first (also those not committed yet).
  virtual std::vector<DeadLetter> deadLetters(size_t limit) = 0;

  /// The journal pulled away under the running daemon: journal.db, its -wal or -shm deleted,
  /// moved or replaced (compared by device and inode with the files it opened). Then commits
  /// were going to files nobody will ever open again; the open connection still sees all of
  /// them, so it is copied to the path (SQLite's backup API, into a temporary file renamed into
  /// place and fsynced), the connection moves to the copy and work carries on: nothing
  /// committed (acknowledged) is lost. A file found in its place that is not ours is moved to
  /// `<path>.replaced-<UTC time>` first. Logged as an error. While a copy cannot be written
  /// (e.g. the disk is full), commit() fails, so nothing more is acknowledged, and the next
  /// call tries again. Returns false while the journal is not back in place. Call it every
  /// second. Environment: GW_TEST_NO_JOURNAL_GUARD=1 turns the check off (tests only: it
  /// shows the loss the check prevents).
  virtual bool checkFile() = 0;

  // The firing alerts (issue 13): one row per alert firing, keyed by its dedup key (stable per
  // gateway × rule × series, across restarts and reloads), so that a change costs one row.
  /// Records that alert `key` fires, as `json` (its trigger event), replacing a row of the same
  /// key: written with the next commit, in the same transaction as the records appended before
  /// it (its outbox event), so a crash never leaves one without the other.
  virtual void putFiring(std::string_view key, std::string_view json) = 0;
  /// Alert `key` no longer fires: its row goes with the next commit, like putFiring().
  virtual void removeFiring(std::string_view key) = 0;
  /// Calls visit(key, json) for every firing alert, committed rows with the pending changes
  /// applied, one row in memory at a time (for start-up: 100,000 firing alerts are not one
  /// string). `visit` may call putFiring() and removeFiring(); what it puts is not visited.
  /// Returns false after a read error (logged).
  virtual bool forEachFiring(
      const std::function<void(std::string_view key, std::string_view json)>& visit) = 0;
};

/// Tests only: called on every journal's sync thread right before each fdatasync of the WAL (a
/// test holds a sync back to see that nothing is acknowledged meanwhile). Set it before a
/// journal is opened or while it is open; empty = none.
void setWalSyncHookForTests(std::function<void()> hook);

}  // namespace gw::buffer
