// The SQLite journal's class, private to buffer/. Its definition is split by subject:
// journal.cpp (append, commit, read, cursors, retention, stats), journal_open.cpp (open:
// quick_check, schema check, move-aside of a corrupt file, loading state), journal_schema.cpp
// (the schema, its upgrades, the prepared statements) and journal_codec.cpp (tags and
// aggregate statistics as BLOBs).
#pragma once

#include <fmt/core.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "buffer/dead_letter_table.h"
#include "buffer/journal.h"
#include "buffer/series_table.h"
#include "buffer/sqlite.h"
#include "buffer/wal_checkpointer.h"
#include "buffer/wal_syncer.h"
#include "core/log.h"

namespace gw::buffer::detail {

namespace fs = std::filesystem;

/// The PRAGMA synchronous value of a setting; one place for every connection opened.
const char* synchronousPragma(Synchronous s);
/// WAL file size kept after a checkpoint (PRAGMA journal_size_limit): at least this, else
/// JournalOptions::wal_checkpoint_bytes (a WAL that is reused is not truncated and regrown).
constexpr std::int64_t kJournalSizeLimit = 4 << 20;
constexpr std::int64_t kWalFrameHeader = 24;

/// A seq or count as SQLite's integer (seqs stay far below 2^63).
inline std::int64_t i64(std::uint64_t v) { return static_cast<std::int64_t>(v); }

/// Wrapping difference, so any (event, device) pair round-trips exactly, even across int64 range.
inline std::int64_t wrapSub(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}
/// The PRAGMAs every connection to a journal gets (synchronous, journal_size_limit,
/// secure_delete), after journal_mode.
std::string connectionPragmas(const JournalOptions& o);
using sqlite::Blob;
using sqlite::ResetGuard;
using sqlite::Stmt;

constexpr std::int64_t kApplicationId = 0x47574A31;   // "GWJ1", marks the file as ours
constexpr std::int64_t kSchemaVersion = 8;            // PRAGMA user_version
constexpr Nanos kLogInterval = 10 * kNanosPerSecond;  // for repeated data-path errors

/// The schema of version kSchemaVersion, for a new file (journal_schema.cpp).
extern const char* const kSchema;
/// The statements that create segment table r_<n> (journal_schema.cpp).
std::string segmentTableSql(int n);

/// One segment of the rows: table r_<n>, holding the contiguous seqs [first, last] (empty when
/// last < first). Segments are emptied whole (journal_segments.cpp).
struct Segment {
  int n = 0;
  std::uint64_t first = 1, last = 0;
  Nanos opened = 0;  // wall time of its first row (this process's), for the rotation by time
  sqlite::Stmt insert, insert_many, read, read_alerts, clear, clear_through;
  std::uint64_t rows() const { return last >= first ? last - first + 1 : 0; }
};

// Column k (the columns are described with kSchema, in journal_schema.cpp).
enum RowKind : std::uint8_t { kRowReading = 0, kRowAggregate = 1, kRowAlert = 2 };
/// Rows per multi-row INSERT (Segment::insert_many) in a commit; the rest of a batch goes one
/// row at a time.
inline constexpr size_t kRowsPerInsert = 32;

/// Tags as a BLOB: (varint length, bytes) for each key and value, in template order.
std::string encodeTags(const std::vector<std::pair<std::string, std::string>>& tags);
bool decodeTags(std::string_view in, std::vector<std::pair<std::string, std::string>>& tags);
/// A `series` row's device, metric and tags from columns `first`, `first + 1` and `first + 2` of
/// `row` into `out` (its strings reused); false when the tags cannot be decoded.
bool readSeriesColumns(const Stmt& row, int first, Series& out);
/// A reading's value as an exact decimal (schema 7): when `v` is m / 10^k for an integer m with
/// |m| < 2^47 and k in 1..kMaxDecimalScale (the double that division gives, bit for bit), returns
/// k and sets `m`: the row stores m in v (SQLite keeps an integral REAL as an integer of 1-6
/// bytes instead of 8) and k in c (packReference). 0 for anything else (integral values, NaN,
/// infinities, denormals, most random doubles): v is stored as it is. -0.0 is m = 0 at scale 1
/// (SQLite turns a stored -0.0 into 0; no decimal gives m = 0).
inline constexpr int kMaxDecimalScale = 8;
int decimalScale(double v, double& m);
/// The value of a row's v column read back, for scale `k` (0: as stored).
double fromDecimal(double stored, int k);
/// Column c of a reading (schema 7). Its TimeReference as is (0..255) when the row is in the
/// plain form of version 6. A compact row has c = -1 - (reference + 4 (scale + 9 ms)), in
/// -72..-1 (one byte, as 2..127 are), for references below 4: `scale` the decimal scale of v
/// (0: v as it is), `ms` when t holds the device time in milliseconds (t * 10^6 + d is the
/// event time; d is event - device time, so the device time is t * 10^6 exactly). Rows before
/// version 7 have c >= 0.
inline constexpr int kCompactReferences = 4;
struct RowForm {
  std::uint8_t reference = 0;
  int scale = 0;    // 0..kMaxDecimalScale
  bool ms = false;  // t is the device time in ms
};
inline std::int64_t packReference(const RowForm& f) {
  if (f.scale == 0 && !f.ms) return f.reference;
  return -1 -
         (f.reference + kCompactReferences * (f.scale + (kMaxDecimalScale + 1) * (f.ms ? 1 : 0)));
}
/// False for a value of c that packReference() does not give.
inline bool unpackReference(std::int64_t c, RowForm& f) {
  if (c >= 0) {
    f = RowForm{static_cast<std::uint8_t>(c), 0, false};
    return c <= 255;
  }
  const std::int64_t e = -1 - c;
  if (e >= kCompactReferences * 2 * (kMaxDecimalScale + 1)) return false;
  f.reference = static_cast<std::uint8_t>(e % kCompactReferences);
  f.scale = static_cast<int>(e / kCompactReferences % (kMaxDecimalScale + 1));
  f.ms = e / kCompactReferences / (kMaxDecimalScale + 1) == 1;
  return true;
}
/// A reading's columns (t, v, c, d) as bindRow() writes them: `t`, `v` and `c` are changed to
/// the compact form where it applies.
void compactReading(std::int64_t& t, double& v, std::int64_t& c, const std::int64_t* d);
/// A reading's columns read back: the event time and value; false when c is not valid (or says
/// ms without a d).
bool expandReading(std::int64_t t, double v, std::int64_t c, const std::int64_t* d, Nanos& event,
                   double& value, std::uint8_t& reference);
/// An aggregate's (t, d, c) as bindRow() writes them (schema 7): its window start and size in ms
/// when both are whole ms (c = -1; 10 s windows: 6 + 2 bytes where 8 + 6 were), else as they are
/// (c = 0, the only form before).
void compactAggregate(std::int64_t& t, std::int64_t& d, std::int64_t& c);
/// An aggregate's window start and size read back; false for a c that no version wrote.
bool expandAggregate(std::int64_t t, std::int64_t d, std::int64_t c, Nanos& start, Nanos& size);
/// An aggregate's statistics as a BLOB (column x).
std::string encodeWindow(const WindowStats& w);
bool decodeWindow(std::string_view in, WindowStats& w);

fs::path withSuffix(const fs::path& p, std::string_view suffix);

enum class Outcome { kOk, kCorrupt, kFatal, kNewer };  // kNewer: left as it is
struct OpenResult {
  Outcome outcome = Outcome::kOk;
  std::string reason;
};

class SqliteJournal final : public Journal {
 public:
  /// Gives the unused seq reservation back (journal_tail.cpp).
  ~SqliteJournal() override;
  explicit SqliteJournal(const JournalOptions& options)
      : options_(options),
        clock_(options.clock ? options.clock : std::function<Nanos()>(wallNow)),
        series_(options.expected_series, options.pinned_series, options.series_cache) {
    for (const auto& name : options.sinks) sinks_.try_emplace(name);
    // The cursors of the sinks that hold records (forwarders): they bound which cached series
    // may be evicted (updateEvictable()).
    for (auto& [name, st] : sinks_)
      if (std::find(options.sinks_without_series.begin(), options.sinks_without_series.end(),
                    name) == options.sinks_without_series.end())
        holding_sinks_.push_back(&st);
  }

  OpenResult open();
  // So that closing does not checkpoint a WAL into the corrupt file kept for inspection.
  void closeWithoutCheckpoint() {
    checkpointer_.detach();
    if (db_) sqlite3_db_config(db_.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  }
  void setMovedAside(fs::path p) { moved_aside_ = std::move(p); }

  SeriesId internSeries(const Series& series) override;  // journal_series.cpp
  /// Tests: the series in memory.
  const SeriesTable& seriesTable() const { return series_; }
  const InternedSeries& series(SeriesId id) override;
  std::uint64_t append(SeriesId series, double value, Nanos event_time,
                       std::optional<Nanos> device_time, TimeReference reference) override;
  std::uint64_t appendAggregate(SeriesId series, const WindowStats& window) override;
  std::uint64_t appendAlert(SeriesId series, Nanos time, double value,
                            std::string_view json) override;
  size_t pending() const override { return pending_.size(); }
  bool commit() override;
  using Journal::read;
  using Journal::readAlerts;
  using Journal::readTail;
  Reader readerOf(std::string_view sink) const override;  // journal_series.cpp
  void read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
            Reader reader) override;
  void readAlerts(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                  Reader reader) override;
  std::uint64_t readTail(std::uint64_t after, size_t limit,  // journal_tail.cpp
                         std::vector<ReadingRecord>& out, Reader reader) override;
  std::uint64_t sendableSeq() const override;  // journal_tail.cpp
  void readDevice(std::string_view device, std::uint64_t after, size_t limit, std::uint64_t scan,
                  std::vector<ReadingRecord>& out) override;
  std::uint64_t lastSeq() const override { return last_seq_; }
  std::uint64_t durableSeq() const override;  // journal_sync.cpp
  void onDurable(std::function<void(std::uint64_t)> fn) override;
  std::uint64_t syncNow() override;
  void putState(std::string_view key, std::string value) override;
  std::optional<std::string> state(std::string_view key) const override;
  std::uint64_t cursor(std::string_view sink) const override;
  void setCursor(std::string_view sink, std::uint64_t seq) override;
  std::uint64_t enforceRetention(Nanos now, size_t step) override;
  JournalStats stats() const override;
  bool checkFile() override;                       // journal_guard.cpp
  void addDeadLetter(DeadLetter letter) override;  // dead_letters.cpp
  std::vector<DeadLetter> deadLetters(size_t limit) override;
  /// Takes `<path>.lock` (flock); false with `error` when another process holds it.
  bool lock(std::string& error);
  /// Remembers which files the connection has open (journal_guard.cpp).
  void recordFiles();
  /// Checkpoints from now on run on the checkpointer's thread (journal.cpp).
  void startCheckpointer();
  /// synchronous = kFull: the WAL is synced by syncer_ from now on, on the file the connection
  /// has open, and everything committed so far is durable (journal_sync.cpp). Without it the
  /// connection syncs inside COMMIT (SQLite's synchronous=FULL).
  void startSyncer();

 private:
  struct PendingRow {
    Nanos t;
    double v;
    std::int64_t d;  // event - device time (or window size), when has_d
    SeriesId s;
    bool has_d;
    RowKind kind;    // all but readings take the next of pending_blobs_
    std::uint8_t c;  // TimeReference
  };
  struct SinkState {
    std::uint64_t cursor = 0;
    std::uint64_t dropped = 0;
    bool dirty = false;  // cursor/dropped not yet written
    /// The highest seq the sink itself confirmed (setCursor), or its cursor at open. Retention
    /// moves `cursor` past rows it drops, maybe while the sink's worker still sends a batch of
    /// them: the series cache's eviction goes by this instead (updateEvictable()).
    std::uint64_t confirmed = 0;
  };
  struct DropTally {
    std::uint64_t rows = 0, first = 0, last = 0;
    std::map<std::string, std::uint64_t, std::less<>> unsent;  // per sink
  };

  OpenResult failed(int rc, std::string_view what) const;
  int exec(const char* sql);
  int queryInt(const char* sql, std::int64_t& out);
  int quickCheck(std::string& result);
  OpenResult upgradeFrom(std::int64_t from);
  int prepareStatements();
  OpenResult loadState();
  int registerSinks(std::map<std::string, SinkState, std::less<>> stored);

  template <typename F>
  int transaction(F&& body);
  void rollback();
  /// Binds one row's 8 values at parameters base+1..base+8 of an insert statement.
  static int bindRow(Stmt& st, int base, std::uint64_t seq, const PendingRow& p,
                     const std::string* blob);
  int insertRow(std::uint64_t seq, const PendingRow& p, const std::string* blob);
  /// Inserts the first `rows` pending rows, seqs from last_seq_ + 1 on, into the newest
  /// segment: kRowsPerInsert rows per statement, the rest one at a time; before each
  /// statement the series its rows refer to, from `series_to` on (advanced). Past
  /// options_.commit_budget (counted from `start`, the commit's own start), stops at a
  /// statement's end within the first `splittable` rows and lowers `rows` to what it inserted.
  int insertPending(size_t& rows, size_t splittable, Nanos start, size_t& series_to);
  /// Inserts series rows from `series_to` up to `upto` (exclusive); `series_to` follows.
  int insertSeriesUpTo(size_t& series_to, size_t upto);
  /// Inserts the series rows not yet written from `series_to` on, kRowsPerInsert at a time,
  /// until options_.commit_budget (from `start`) is spent; at least one step when `progress`.
  int insertNewSeries(size_t& series_to, Nanos start, bool progress);
  /// How many of the first `rows` pending rows come before the first one whose series id is
  /// `upto` or higher.
  size_t rowsWithSeriesBelow(size_t rows, size_t upto) const;
  /// How many pending rows the next commit writes at most (options_.max_commit_rows), and in
  /// `splittable` how many of the first may be split off (readings only, within the cap).
  size_t commitRows(size_t& splittable) const;
  /// After a commit of the first `rows` pending rows, readings only, fewer than all: they
  /// become the committed tail, the others stay pending.
  void keepCommittedPrefix(size_t rows);
  void readRows(bool alerts, std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                Reader reader);
  size_t readSegment(Stmt& stmt, std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                     size_t n);

  // The seq reservation (journal_tail.cpp). After loadSegments(), before registerSinks():
  // reads meta 'seq_reserved', goes on after it (a gap after a crash) and moves the stored
  // cursors that had confirmed every row past the gap.
  OpenResult loadReservation(std::map<std::string, SinkState, std::less<>>& stored);
  /// The reservation a commit of `rows` rows writes, or 0 when the current one is enough.
  std::uint64_t reservationFor(size_t rows) const;
  int writeReservation(std::uint64_t reserved);
  /// After a commit that wrote reservation `reserved` (through seq last_seq_).
  void reserved(std::uint64_t reserved);
  /// False when a record's series could not be read back (n then ends before it).
  bool readPending(std::uint64_t after, std::uint64_t upto, size_t limit,
                   std::vector<ReadingRecord>& out, size_t& n);
  /// At a commit (pending rows through last_seq_ committed): they become the committed tail,
  /// pending_ is left empty (journal_tail.cpp).
  void keepCommittedTail();
  /// Records of `rows` (seqs first_seq, first_seq + 1, …) after `after` through `upto`. False
  /// when a record's series could not be read back (n then ends before it).
  bool readSlice(const std::vector<PendingRow>& rows, const std::vector<std::string>& blobs,
                 std::uint64_t first_seq, std::uint64_t after, std::uint64_t upto, size_t limit,
                 std::vector<ReadingRecord>& out, size_t& n);

  // Series past pinned_series (journal_series.cpp).
  /// The id of `series` in the series table (SQLite), or SeriesTable::kNoId; false on an error.
  bool lookupSeriesRow(const Series& series, SeriesId& id);
  /// Reads series row `id` back; false when it cannot be read (logged).
  bool loadSeriesRow(SeriesId id, Series& out);
  /// The series of `id` (< series_.size()) for a record of `seq` handed out: in memory, or read
  /// back from SQLite into the cache; nullptr when it cannot be read (logged).
  const InternedSeries* resolveSeries(SeriesId id, std::uint64_t seq);
  /// Tells the series table what it may evict: series rows written, and per holding sink (its
  /// Reader, holding_sinks_' index) the records it read that it confirmed (SinkState::confirmed).
  void updateEvictable();
  /// The ids of `device`'s series (readDevice()), as a comma-separated list.
  bool deviceSeriesIds(std::string_view device, std::string& ids);

  // Segments (journal_segments.cpp).
  OpenResult loadSegments(std::uint64_t stored_floor);
  int prepareSegment(Segment& seg);
  /// Before a commit of pending rows: a new segment takes them when the last one is full.
  void maybeRotate(Nanos now);
  /// Deletes the rows of every segment through `upto` (whole segments without WHERE); in a
  /// transaction. The segments' ranges follow with settleSegments() once it committed.
  int clearSegmentsThrough(std::uint64_t upto);
  void settleSegments();
  /// The highest seq every configured sink has confirmed (last_seq_ when there is none).
  std::uint64_t confirmedSeq() const;
  /// The highest seq <= `limit` that ends a segment (or floor_): whole segments only.
  std::uint64_t segmentFloor(std::uint64_t limit) const;
  /// The next `upto` for a cap that must make room: the oldest whole segment, or within the last
  /// one a row estimate of `used - target` bytes.
  std::uint64_t capStep(std::uint64_t used, std::uint64_t target, std::uint64_t step_rows) const;
  int insertSeries(size_t id);
  int writeSink(const std::string& name, std::uint64_t cursor, std::uint64_t dropped);
  int writeDirtySinks();

  /// Deletes rows and commit markers through `upto` and records the floor; in a transaction.
  int deleteThrough(std::uint64_t upto);
  bool removeThrough(std::uint64_t upto, DropTally* tally);
  bool removeUpTo(std::uint64_t limit, std::uint64_t step, DropTally* tally,
                  std::uint64_t& removed);
  bool ageLimit(Nanos now, std::uint64_t& limit);
  bool usedBytes(std::uint64_t& out) const;
  std::optional<Nanos> commitTimeOf(std::uint64_t seq) const;
  void reportDrops(const DropTally& t, std::string_view why);
  void maybeCheckpoint();
  /// A checkpoint of a -wal of `frames` frames: asked of the checkpointer's thread, or run
  /// here when it has no connection or has fallen far behind.
  void checkpoint(sqlite3* db, const char* name, int frames);
  static int walHook(void* self, sqlite3* db, const char* name, int frames);

  template <typename... Args>
  void logLimited(log::RateLimiter& limiter, fmt::format_string<Args...> f, Args&&... args) {
    std::uint64_t suppressed = 0;
    if (!limiter.allow(monoNow(), suppressed)) return;
    std::string msg = fmt::format(f, std::forward<Args>(args)...);
    if (suppressed > 0) msg += fmt::format(" ({} similar messages not logged)", suppressed);
    log::write(log::Level::kError, msg);
  }

  const JournalOptions options_;
  const std::string path_ = options_.path.string();
  const std::function<Nanos()> clock_;
  std::optional<fs::path> moved_aside_;

  // Declared before the statements, so the statements are finalized first.
  sqlite::Db db_;
  Stmt begin_, commit_, rollback_;
  Stmt insert_series_, insert_marker_, write_sink_, write_floor_;
  Stmt delete_markers_, marker_after_, write_state_;
  mutable Stmt marker_at_, page_count_, freelist_count_;
  DeadLetterTable dead_letters_;  // its statements, like the ones above
  std::int64_t page_size_ = 4096;
  // The seq reservation: the highest seq reserved by a committed transaction, the commits that
  // reserved more and are not yet known durable (their last seq, their reservation), and the
  // reservation of the last one known durable.
  std::uint64_t reserved_ = 0;
  mutable std::deque<std::pair<std::uint64_t, std::uint64_t>> reserving_;
  mutable std::uint64_t durable_reserved_ = 0;
  bool no_reservation_ = false;  // GW_TEST_NO_SEQ_RESERVATION=1
  bool read_failed_ = false;     // the last readRows() stopped at an error
  // Segments, after the statements above; each holds its own statements.
  std::deque<std::unique_ptr<Segment>> segments_;        // in seq order; back() takes new rows
  std::deque<std::unique_ptr<Segment>> spare_segments_;  // empty tables, reused first
  std::vector<int> dropped_segments_;  // tables dropped by the last clearSegmentsThrough()
  std::uint64_t segment_rows_ = 0;

  SeriesTable series_;  // pinned: index = SeriesId, never moves; past it a bounded cache
  size_t persisted_series_ = 0;
  // Of sinks_: all but options_.sinks_without_series; the index is the sink's Reader.
  std::vector<const SinkState*> holding_sinks_;
  Stmt find_series_, load_series_, device_series_;  // journal_series.cpp
  std::uint64_t series_lookups_ = 0, series_found_ = 0, series_loads_ = 0;

  std::vector<PendingRow> pending_;
  std::vector<std::string> pending_blobs_;  // x of the pending non-readings, in order
  // The last commit's rows, (tail_after_, last_seq_], kept in memory so that a sink that had
  // not read them all before the commit reads the rest without SQLite (journal_tail.cpp).
  std::vector<PendingRow> tail_;
  std::vector<std::string> tail_blobs_;
  std::uint64_t tail_after_ = 0;
  std::map<std::string, std::string, std::less<>> state_;
  std::map<std::string, std::string, std::less<>> pending_state_;
  std::uint64_t last_seq_ = 0;     // highest committed seq
  std::uint64_t floor_ = 0;        // every seq <= floor_ is deleted; rows are (floor_, last_seq_]
  std::uint64_t retire_upto_ = 0;  // confirmed rows the next commits delete (enforceRetention)
  Nanos last_cursor_write_ = 0;    // wall time of the last commit that wrote the sink cursors
  std::uint64_t idle_check_seq_ = 0;  // last_seq_ at the last retention pass
  bool has_marker_ = false;
  Nanos last_marker_time_ = 0;
  std::uint64_t commits_ = 0;
  std::uint64_t failed_commits_ = 0;  // in a row
  int wal_frames_ = 0;
  int checkpoint_frames_ = 1000;  // the WAL is checkpointed from this many frames on (open())

  std::map<std::string, SinkState, std::less<>> sinks_;  // the configured ones
  std::string error_;

  // The journal pulled away (journal_guard.cpp): device and inode of journal.db, -wal, -shm as
  // opened; the -wal and -shm are learnt when they first appear.
  struct FileId {
    bool known = false;
    std::uint64_t dev = 0, ino = 0;
  };
  FileId files_[3];
  // Held while open: one process per journal (another gatewayd, `gatewayd --recover`).
  struct LockFd {
    int fd = -1;
    ~LockFd();
  };
  LockFd lock_;
  bool detached_ = false;  // pulled away and not yet written back: commit() refuses
  std::uint64_t restores_ = 0;
  bool restore(const std::string& why);
  // buffer.min_free (journal_disk.cpp).
  std::uint64_t keepFree(std::uint64_t step_rows);
  bool low_disk_ = false;
  std::uint64_t low_disk_used_ = 0;             // pages in use at the last check while low
  std::uint64_t disk_free_ = 0, min_free_ = 0;  // as last checked, for stats()
  Nanos disk_checked_at_ = 0;                   // clock_() of the last statvfs (0: none yet)
  int disk_checked_frames_ = 0;                 // wal_frames_ then
  int configure(sqlite3* db);

  // The WAL's fdatasync after each commit (journal_sync.cpp); destroyed after the checkpointer
  // and before db_: its destructor syncs what the last commits wrote.
  WalSyncer syncer_;
  bool wal_sync_ = false;  // syncer_ attached: durableSeq() is its durable(), not last_seq_
  void afterCommit();

  // Last: destroyed first, so its thread and connection are gone before db_ closes (and
  // checkpoints the -wal into the file as the last connection).
  WalCheckpointer checkpointer_;

  log::RateLimiter commit_log_{kLogInterval}, read_log_{kLogInterval}, retention_log_{kLogInterval},
      cursor_log_{kLogInterval};

  // The firing alerts as rows of table alert_firing (journal_alerts.cpp).
 public:
  void putFiring(std::string_view key, std::string_view json) override;
  void removeFiring(std::string_view key) override;
  bool forEachFiring(
      const std::function<void(std::string_view key, std::string_view json)>& visit) override;

 private:
  /// Inside commit()'s transaction: the pending changes of the firing set.
  int writeFiringRows();
  /// After commit()'s transaction succeeded.
  void firingCommitted() { pending_firing_.clear(); }
  /// Upgrade to version 6, inside its transaction: state 'alerts.firing' (newline-separated
  /// JSON of every firing alert) becomes rows of alert_firing, then goes.
  int convertFiringState();
  /// Changes since the last commit: key → json, or nullopt for a row to delete.
  std::map<std::string, std::optional<std::string>, std::less<>> pending_firing_;
  Stmt put_firing_, delete_firing_;
};

template <typename F>
int SqliteJournal::transaction(F&& body) {
  int rc = sqlite::run(begin_);
  if (rc == SQLITE_OK) rc = body();
  if (rc == SQLITE_OK) rc = sqlite::run(commit_);
  if (rc != SQLITE_OK) {
    error_ = sqlite::describe(db_.get(), rc);
    rollback();
  }
  return rc;
}

}  // namespace gw::buffer::detail
