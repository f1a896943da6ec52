#include "buffer/journal.h"

#include <fmt/core.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <iterator>
#include <limits>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "buffer/sqlite.h"
#include "core/log.h"

namespace gw::buffer {
namespace {

namespace fs = std::filesystem;
using sqlite::Blob;
using sqlite::ResetGuard;
using sqlite::Stmt;

constexpr std::int64_t kApplicationId = 0x47574A31;  // "GWJ1", marks the file as ours
constexpr std::int64_t kSchemaVersion = 3;           // PRAGMA user_version
constexpr int kBusyTimeoutMs = 200;  // only another process (sqlite3 CLI) can hold the lock
constexpr std::int64_t kJournalSizeLimit = 4 << 20;  // WAL file size kept after a checkpoint
constexpr int kAutoCheckpointFrames = 1000;          // SQLite's default, as a backstop
constexpr int kRetentionCheckpointFrames = 128;      // enforceRetention() checkpoints above this
constexpr int kMaxTxnsPerPhase = 16;
constexpr Nanos kLogInterval = 10 * kNanosPerSecond;  // for repeated data-path errors

// Schema version 3. One row per record; seq is the rowid, so a reading is a few varints and a
// double:
//   s  series id, t event time (ns), v value (NULL for NaN),
//   d  event time - device time (ns; NULL when the payload had no device time). Usually small.
//   c  a reading's TimeReference, its uint8 value as is (so a new reference needs no schema
//      change); 0 in other records.
//   x  NULL for a reading (one header byte); an aggregate's statistics (encodeWindow) or an
//      alert's JSON. An aggregate's t is the window start and d the window size.
//   k  the record kind (RowKind): 0 reading, 1 aggregate, 2 alert. Last, because a version 2
//      file gains it by ALTER TABLE ADD COLUMN, which rewrites no reading: rows without it read
//      the default 0.
//   Integers 0 and 1 are stored in the record header alone, so c and k cost a reading 2 bytes.
// r_alerts: a partial index over the few alert rows, for the notifiers' outbox reads. Queries
//   must spell `k = 2` literally for SQLite to use it.
// state: small named values the pipeline persists with its commits (window watermark, …).
// commits: commit wall time per group of commits; rows first_seq.. were committed in
//   [t, t + kCommitTimeGranularity). Pruned with the rows it covers.
// meta 'floor': every row <= floor was deleted, so seq continues after an emptied table.
//
// Older versions are upgraded in place on open, in one transaction (kUpgrades):
//   1  readings only: no x, no r_alerts, no state.
//   2  f instead of c and k: a reading's TimeReference (0, 1) or the kind of another record
//      (2 aggregate, 3 alert), so a third reference would have read back as an aggregate.
constexpr const char* kSchema = R"sql(
BEGIN IMMEDIATE;
CREATE TABLE r(seq INTEGER PRIMARY KEY, s INTEGER NOT NULL, t INTEGER NOT NULL, v REAL,
               d INTEGER, c INTEGER NOT NULL, x BLOB, k INTEGER NOT NULL DEFAULT 0);
CREATE INDEX r_alerts ON r(k) WHERE k = 2;
CREATE TABLE state(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE series(id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
                    tags BLOB NOT NULL);
CREATE TABLE sinks(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL, dropped INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE commits(first_seq INTEGER PRIMARY KEY, t INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(k, v) VALUES('floor', 0);
PRAGMA application_id = 1196902961;
PRAGMA user_version = 3;
COMMIT;
)sql";
static_assert(kApplicationId == 1196902961 && kSchemaVersion == 3, "update kSchema");

// kUpgrades[v - 1] turns version v into v + 1; run in one transaction with the user_version
// set at the end. Each step ends at exactly the schema of the next version.
constexpr const char* kUpgrades[] = {
    // 1 to 2: no row is rewritten.
    R"sql(
ALTER TABLE r ADD COLUMN x BLOB;
CREATE INDEX r_alerts ON r(f) WHERE f = 3;
CREATE TABLE state(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
)sql",
    // 2 to 3: f becomes c; only aggregate and alert rows are rewritten (readings keep their
    // bytes and read k = 0). Their kinds 2, 3 become 1, 2.
    R"sql(
DROP INDEX r_alerts;
ALTER TABLE r RENAME COLUMN f TO c;
ALTER TABLE r ADD COLUMN k INTEGER NOT NULL DEFAULT 0;
UPDATE r SET k = c - 1, c = 0 WHERE c IN (2, 3);
CREATE INDEX r_alerts ON r(k) WHERE k = 2;
)sql",
};
static_assert(std::size(kUpgrades) == kSchemaVersion - 1, "one upgrade step per version");

// Column k.
enum RowKind : std::uint8_t { kRowReading = 0, kRowAggregate = 1, kRowAlert = 2 };

[[noreturn]] void die(const std::string& what) {
  log::error("journal: bug: {}", what);
  std::abort();
}

std::int64_t i64(std::uint64_t v) { return static_cast<std::int64_t>(v); }

// Wrapping difference, so any (event, device) pair round-trips exactly, even across int64 range.
std::int64_t wrapSub(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}

// Tags as a BLOB: (varint length, bytes) for each key and value, in template order.
void appendVarint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>(v | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

bool readVarint(std::string_view& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool readString(std::string_view& in, std::string& out) {
  std::uint64_t n = 0;
  if (!readVarint(in, n) || n > in.size()) return false;
  out.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

std::string encodeTags(const std::vector<std::pair<std::string, std::string>>& tags) {
  std::string out;
  for (const auto& [k, v] : tags) {
    appendVarint(out, k.size());
    out += k;
    appendVarint(out, v.size());
    out += v;
  }
  return out;
}

bool decodeTags(std::string_view in, std::vector<std::pair<std::string, std::string>>& tags) {
  tags.clear();
  while (!in.empty()) {
    auto& [k, v] = tags.emplace_back();
    if (!readString(in, k) || !readString(in, v)) return false;
  }
  return true;
}

// An aggregate's statistics: varints stats, count, late, quantiles, then each other statistic in
// `stats` as an 8-byte little-endian double, in kStatOrder. ~40 bytes for the defaults.
std::string encodeWindow(const WindowStats& w) {
  std::string out;
  appendVarint(out, w.stats);
  appendVarint(out, w.count);
  appendVarint(out, w.late);
  appendVarint(out, static_cast<std::uint8_t>(w.quantiles));
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    std::uint64_t bits = 0;
    const double v = w.get(st);
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 8; ++i) out += static_cast<char>(bits >> (8 * i));
  }
  return out;
}

bool decodeWindow(std::string_view in, WindowStats& w) {
  std::uint64_t stats = 0, quantiles = 0;
  if (!readVarint(in, stats) || !readVarint(in, w.count) || !readVarint(in, w.late) ||
      !readVarint(in, quantiles) || stats > 0xffff ||
      quantiles > static_cast<std::uint8_t>(QuantileMode::kCollapsed))
    return false;
  w.stats = static_cast<StatSet>(stats);
  w.quantiles = static_cast<QuantileMode>(quantiles);
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    if (in.size() < 8) return false;
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i)
      bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(8);
    double v = 0;
    std::memcpy(&v, &bits, sizeof v);
    w.set(st, v);
  }
  return in.empty();
}

struct SeriesPtrHash {
  size_t operator()(const Series* s) const noexcept { return SeriesHash{}(*s); }
};
struct SeriesPtrEq {
  bool operator()(const Series* a, const Series* b) const noexcept { return *a == *b; }
};

enum class Outcome { kOk, kCorrupt, kFatal };
struct OpenResult {
  Outcome outcome = Outcome::kOk;
  std::string reason;
};

std::string utcStamp(Nanos t) {
  std::time_t secs = static_cast<std::time_t>(t / kNanosPerSecond - (t % kNanosPerSecond < 0));
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&secs, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm) == 0)
    return std::to_string(secs);
  return buf;
}

fs::path withSuffix(const fs::path& p, std::string_view suffix) {
  fs::path r = p;
  r += suffix;
  return r;
}

// Renames the database and its -wal/-shm out of the way; returns the new database path.
fs::path moveAside(const fs::path& db, Nanos now) {
  const std::string stamp = ".corrupt-" + utcStamp(now);
  fs::path target = withSuffix(db, stamp);
  std::error_code ec;
  for (int i = 1; fs::exists(target, ec) || fs::exists(withSuffix(target, "-wal"), ec); ++i)
    target = withSuffix(db, stamp + "-" + std::to_string(i));
  fs::rename(db, target, ec);
  if (ec)
    throw JournalError(fmt::format("journal {} is corrupt and cannot be moved aside: {}",
                                   db.string(), ec.message()));
  // A -wal left next to a new database would be replayed into it: moving it is not optional.
  const fs::path wal = withSuffix(db, "-wal");
  if (fs::exists(wal, ec)) {
    fs::rename(wal, withSuffix(target, "-wal"), ec);
    if (ec)
      throw JournalError(fmt::format("journal {}: cannot move aside {}: {}", db.string(),
                                     wal.string(), ec.message()));
  }
  const fs::path shm = withSuffix(db, "-shm");
  if (fs::exists(shm, ec)) {
    fs::rename(shm, withSuffix(target, "-shm"), ec);
    if (ec) fs::remove(shm, ec);  // only an index into the -wal; SQLite rebuilds it
  }
  return target;
}

class SqliteJournal final : public Journal {
 public:
  explicit SqliteJournal(const JournalOptions& options)
      : options_(options), clock_(options.clock ? options.clock : std::function<Nanos()>(wallNow)) {
    for (const auto& name : options.sinks) sinks_.try_emplace(name);
  }

  OpenResult open();
  // So that closing does not checkpoint a WAL into the corrupt file kept for inspection.
  void closeWithoutCheckpoint() {
    if (db_) sqlite3_db_config(db_.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  }
  void setMovedAside(fs::path p) { moved_aside_ = std::move(p); }

  SeriesId internSeries(const Series& series) override;
  const Series& series(SeriesId id) const override;
  std::uint64_t append(SeriesId series, double value, Nanos event_time,
                       std::optional<Nanos> device_time, TimeReference reference) override;
  std::uint64_t appendAggregate(SeriesId series, const WindowStats& window) override;
  std::uint64_t appendAlert(SeriesId series, Nanos time, double value,
                            std::string_view json) override;
  size_t pending() const override { return pending_.size(); }
  bool commit() override;
  void read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) override;
  void readAlerts(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) override;
  std::uint64_t lastSeq() const override { return last_seq_; }
  void putState(std::string_view key, std::string value) override;
  std::optional<std::string> state(std::string_view key) const override;
  std::uint64_t cursor(std::string_view sink) const override;
  void setCursor(std::string_view sink, std::uint64_t seq) override;
  std::uint64_t enforceRetention(Nanos now, size_t step) override;
  JournalStats stats() const override;

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
  int insertRow(std::uint64_t seq, const PendingRow& p, const std::string* blob);
  void readRows(Stmt& stmt, std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out);
  int insertSeries(size_t id);
  int writeSink(const std::string& name, std::uint64_t cursor, std::uint64_t dropped);
  int writeDirtySinks();

  bool removeThrough(std::uint64_t upto, DropTally* tally);
  bool removeUpTo(std::uint64_t limit, std::uint64_t step, DropTally* tally,
                  std::uint64_t& removed);
  bool ageLimit(Nanos now, std::uint64_t& limit);
  bool usedBytes(std::uint64_t& out) const;
  std::optional<Nanos> commitTimeOf(std::uint64_t seq) const;
  void reportDrops(const DropTally& t, std::string_view why);
  void maybeCheckpoint();
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
  Stmt insert_row_, insert_series_, insert_marker_, write_sink_, write_floor_;
  Stmt read_, read_alerts_, delete_rows_, delete_markers_, marker_after_, write_state_;
  mutable Stmt marker_at_, page_count_, freelist_count_;
  std::int64_t page_size_ = 4096;

  std::deque<Series> series_;  // index = SeriesId; a deque never moves its elements
  std::unordered_map<const Series*, SeriesId, SeriesPtrHash, SeriesPtrEq> series_ids_;
  size_t persisted_series_ = 0;

  std::vector<PendingRow> pending_;
  std::vector<std::string> pending_blobs_;  // x of the pending non-readings, in order
  std::map<std::string, std::string, std::less<>> state_;
  std::map<std::string, std::string, std::less<>> pending_state_;
  std::uint64_t last_seq_ = 0;  // highest committed seq
  std::uint64_t floor_ = 0;     // every seq <= floor_ is deleted; rows are (floor_, last_seq_]
  bool has_marker_ = false;
  Nanos last_marker_time_ = 0;
  std::uint64_t commits_ = 0;
  std::uint64_t failed_commits_ = 0;  // in a row
  int wal_frames_ = 0;

  std::map<std::string, SinkState, std::less<>> sinks_;  // the configured ones
  std::string error_;
  log::RateLimiter commit_log_{kLogInterval}, read_log_{kLogInterval}, retention_log_{kLogInterval},
      cursor_log_{kLogInterval};
};

OpenResult SqliteJournal::failed(int rc, std::string_view what) const {
  const int p = sqlite::primary(rc);
  return {p == SQLITE_CORRUPT || p == SQLITE_NOTADB ? Outcome::kCorrupt : Outcome::kFatal,
          fmt::format("{}: {}", what, sqlite::describe(db_.get(), rc))};
}

int SqliteJournal::exec(const char* sql) {
  return sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
}

int SqliteJournal::queryInt(const char* sql, std::int64_t& out) {
  Stmt s;
  int rc = s.prepare(db_.get(), sql, false);
  if (rc != SQLITE_OK) return rc;
  rc = s.step();
  if (rc == SQLITE_ROW) {
    out = s.columnInt(0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_ERROR;  // a pragma that returns no value here is unexpected
  }
  return rc;
}

int SqliteJournal::quickCheck(std::string& result) {
  Stmt s;
  int rc = s.prepare(db_.get(), "PRAGMA quick_check(10)", false);
  if (rc != SQLITE_OK) return rc;
  result.clear();
  while ((rc = s.step()) == SQLITE_ROW) {
    if (!result.empty()) result += "; ";
    result += s.columnText(0);
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

OpenResult SqliteJournal::open() {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path_.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(raw);  // also on failure: the handle holds the error message
  if (rc != SQLITE_OK) return failed(rc, "open");
  if ((rc = sqlite3_extended_result_codes(db_.get(), 1)) != SQLITE_OK)
    return failed(rc, "extended_result_codes");
  if ((rc = sqlite3_busy_timeout(db_.get(), kBusyTimeoutMs)) != SQLITE_OK)
    return failed(rc, "busy_timeout");

  // Before anything writes: a corrupt file is kept as it is for inspection.
  std::string check;
  if ((rc = quickCheck(check)) != SQLITE_OK) return failed(rc, "quick_check");
  if (check != "ok") return {Outcome::kCorrupt, "quick_check: " + check};
  if (sqlite3_db_readonly(db_.get(), "main") == 1)
    return {Outcome::kFatal, "the file is read-only for this user"};

  std::int64_t app_id = 0, version = 0, objects = 0;
  if ((rc = queryInt("PRAGMA application_id", app_id)) != SQLITE_OK ||
      (rc = queryInt("PRAGMA user_version", version)) != SQLITE_OK ||
      (rc = queryInt("SELECT count(*) FROM sqlite_master", objects)) != SQLITE_OK)
    return failed(rc, "reading the schema");
  const bool fresh = app_id == 0 && version == 0 && objects == 0;
  const bool upgrade = app_id == kApplicationId && version >= 1 && version < kSchemaVersion;
  if (app_id == kApplicationId && version > kSchemaVersion)
    return {Outcome::kCorrupt,
            fmt::format("written by a newer iot-gateway (journal schema version {}, this one reads "
                        "versions 1 to {})",
                        version, kSchemaVersion)};
  if (!fresh && !upgrade && (app_id != kApplicationId || version != kSchemaVersion))
    return {Outcome::kCorrupt,
            fmt::format("not an iot-gateway journal of schema version {} (application_id {:#x}, "
                        "user_version {})",
                        kSchemaVersion, app_id, version)};

  {
    Stmt s;
    if ((rc = s.prepare(db_.get(), "PRAGMA journal_mode=WAL", false)) != SQLITE_OK ||
        (rc = s.step()) != SQLITE_ROW)
      return failed(rc, "journal_mode=WAL");
    if (s.columnText(0) != "wal")
      return {Outcome::kFatal, fmt::format("cannot use WAL mode (got {})", s.columnText(0))};
  }
  if (fresh && (rc = exec(kSchema)) != SQLITE_OK) {
    OpenResult r = failed(rc, "creating the schema");
    if (sqlite3_get_autocommit(db_.get()) == 0) exec("ROLLBACK");
    return r;
  }
  if (upgrade) {
    if (OpenResult r = upgradeFrom(version); r.outcome != Outcome::kOk) return r;
  }

  const std::string pragmas =
      fmt::format("PRAGMA synchronous={}; PRAGMA journal_size_limit={};",
                  options_.synchronous_full ? "FULL" : "NORMAL", kJournalSizeLimit);
  if ((rc = exec(pragmas.c_str())) != SQLITE_OK) return failed(rc, "pragmas");
  if ((rc = queryInt("PRAGMA page_size", page_size_)) != SQLITE_OK || page_size_ <= 0)
    return failed(rc, "page_size");
  if (options_.max_size_bytes > 0) {
    // The hard stop behind the max_size cap: commits fail before the disk fills up, even when
    // enforceRetention() is late. (SQLite never sets it below the current page count.)
    const std::uint64_t hard = options_.max_size_bytes / 4 * 5 + (1u << 20);
    const std::string sql = fmt::format("PRAGMA max_page_count={}", hard / page_size_ + 1);
    std::int64_t ignored = 0;
    if ((rc = queryInt(sql.c_str(), ignored)) != SQLITE_OK) return failed(rc, "max_page_count");
  }
  sqlite3_wal_hook(db_.get(), &SqliteJournal::walHook, this);

  if ((rc = prepareStatements()) != SQLITE_OK) {
    OpenResult r = failed(rc, "preparing statements");
    // Our application_id with tables that do not fit the statements: damaged, not unreadable.
    if (sqlite::primary(rc) == SQLITE_ERROR) r.outcome = Outcome::kCorrupt;
    return r;
  }
  return loadState();
}

OpenResult SqliteJournal::upgradeFrom(std::int64_t from) {
  const auto fail = [&](OpenResult r) {
    r.outcome = Outcome::kFatal;  // the file is fine, only this process cannot change it
    if (sqlite3_get_autocommit(db_.get()) == 0) exec("ROLLBACK");
    return r;
  };
  const std::string what =
      fmt::format("upgrading the schema from version {} to {}", from, kSchemaVersion);
  int rc = exec("BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return fail(failed(rc, what));
  // Read again under the write lock: another process may have upgraded the file meanwhile.
  std::int64_t version = 0;
  if ((rc = queryInt("PRAGMA user_version", version)) != SQLITE_OK) return fail(failed(rc, what));
  if (version != from)
    return fail({Outcome::kFatal,
                 fmt::format("{}: another process changed the version to {}", what, version)});
  const int changes_before = sqlite3_total_changes(db_.get());
  for (std::int64_t v = from; v < kSchemaVersion; ++v) {
    if ((rc = exec(kUpgrades[v - 1])) != SQLITE_OK) return fail(failed(rc, what));
  }
  const std::string set_version = fmt::format("PRAGMA user_version = {}", kSchemaVersion);
  if ((rc = exec(set_version.c_str())) != SQLITE_OK || (rc = exec("COMMIT")) != SQLITE_OK)
    return fail(failed(rc, what));
  log::notice("journal {}: schema upgraded in place from version {} to {} ({} rows rewritten)",
              path_, from, kSchemaVersion, sqlite3_total_changes(db_.get()) - changes_before);
  return {};
}

int SqliteJournal::prepareStatements() {
  sqlite3* db = db_.get();
  const std::pair<Stmt*, const char*> all[] = {
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      {&insert_row_, "INSERT INTO r(seq, s, t, v, d, c, x, k) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"},
      {&insert_series_, "INSERT INTO series(id, device, metric, tags) VALUES(?, ?, ?, ?)"},
      {&insert_marker_, "INSERT INTO commits(first_seq, t) VALUES(?, ?)"},
      {&write_sink_,
       "INSERT INTO sinks(name, cursor, dropped) VALUES(?, ?, ?) ON CONFLICT(name) DO UPDATE "
       "SET cursor = excluded.cursor, dropped = excluded.dropped"},
      {&write_floor_, "INSERT OR REPLACE INTO meta(k, v) VALUES('floor', ?)"},
      {&read_, "SELECT seq, s, t, v, d, c, x, k FROM r WHERE seq > ? ORDER BY seq LIMIT ?"},
      // `k = 2` (kRowAlert) spelled out: the partial index r_alerts is used only then.
      {&read_alerts_,
       "SELECT seq, s, t, v, d, c, x, k FROM r WHERE k = 2 AND seq > ? ORDER BY seq LIMIT ?"},
      {&write_state_, "INSERT OR REPLACE INTO state(k, v) VALUES(?, ?)"},
      {&delete_rows_, "DELETE FROM r WHERE seq <= ?"},
      // Keeps the marker that covers the first remaining row.
      {&delete_markers_,
       "DELETE FROM commits WHERE first_seq < "
       "(SELECT max(first_seq) FROM commits WHERE first_seq <= ?)"},
      {&marker_after_, "SELECT first_seq FROM commits WHERE t > ? ORDER BY first_seq LIMIT 1"},
      {&marker_at_, "SELECT t FROM commits WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1"},
      {&page_count_, "PRAGMA page_count"},
      {&freelist_count_, "PRAGMA freelist_count"},
  };
  for (const auto& [stmt, sql] : all) {
    const int rc = stmt->prepare(db, sql);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

OpenResult SqliteJournal::loadState() {
  int rc;
  {
    Stmt s;
    if ((rc = s.prepare(db_.get(), "SELECT id, device, metric, tags FROM series ORDER BY id",
                        false)) != SQLITE_OK)
      return failed(rc, "loading series");
    while ((rc = s.step()) == SQLITE_ROW) {
      Series series{std::string(s.columnText(1)), std::string(s.columnText(2)), {}};
      if (s.columnInt(0) != static_cast<std::int64_t>(series_.size()) ||
          !decodeTags(s.columnBlob(3), series.tags))
        return {Outcome::kCorrupt, fmt::format("series table: bad row id {}", s.columnInt(0))};
      series_.push_back(std::move(series));
      series_ids_.emplace(&series_.back(), static_cast<SeriesId>(series_.size() - 1));
    }
    if (rc != SQLITE_DONE) return failed(rc, "loading series");
    persisted_series_ = series_.size();
  }

  std::int64_t stored_floor = 0;
  {
    Stmt s;
    if ((rc = s.prepare(db_.get(),
                        "SELECT (SELECT v FROM meta WHERE k = 'floor'), min(seq), max(seq) FROM r",
                        false)) != SQLITE_OK ||
        (rc = s.step()) != SQLITE_ROW)
      return failed(rc, "loading seq range");
    stored_floor = s.columnInt(0);
    const bool empty = s.columnType(1) == SQLITE_NULL;
    const std::int64_t min_seq = s.columnInt(1), max_seq = s.columnInt(2);
    if (stored_floor < 0 || (!empty && (min_seq <= stored_floor || min_seq < 1)))
      return {Outcome::kCorrupt,
              fmt::format("seq range {}..{} below floor {}", min_seq, max_seq, stored_floor)};
    last_seq_ =
        empty ? static_cast<std::uint64_t>(stored_floor) : static_cast<std::uint64_t>(max_seq);
    floor_ = empty ? last_seq_ : static_cast<std::uint64_t>(min_seq - 1);
  }
  {
    Stmt s;
    if ((rc = s.prepare(db_.get(), "SELECT t FROM commits ORDER BY first_seq DESC LIMIT 1",
                        false)) != SQLITE_OK)
      return failed(rc, "loading commit times");
    rc = s.step();
    if (rc == SQLITE_ROW) {
      has_marker_ = true;
      last_marker_time_ = s.columnInt(0);
    } else if (rc != SQLITE_DONE) {
      return failed(rc, "loading commit times");
    }
  }

  {
    Stmt s;
    if ((rc = s.prepare(db_.get(), "SELECT k, v FROM state", false)) != SQLITE_OK)
      return failed(rc, "loading state");
    while ((rc = s.step()) == SQLITE_ROW)
      state_[std::string(s.columnText(0))] = std::string(s.columnBlob(1));
    if (rc != SQLITE_DONE) return failed(rc, "loading state");
  }

  std::map<std::string, SinkState, std::less<>> stored;
  {
    Stmt s;
    if ((rc = s.prepare(db_.get(), "SELECT name, cursor, dropped FROM sinks", false)) != SQLITE_OK)
      return failed(rc, "loading sinks");
    while ((rc = s.step()) == SQLITE_ROW) {
      SinkState& st = stored[std::string(s.columnText(0))];
      st.cursor = static_cast<std::uint64_t>(std::max<std::int64_t>(0, s.columnInt(1)));
      st.dropped = static_cast<std::uint64_t>(std::max<std::int64_t>(0, s.columnInt(2)));
    }
    if (rc != SQLITE_DONE) return failed(rc, "loading sinks");
  }
  if ((rc = registerSinks(std::move(stored))) != SQLITE_OK) return failed(rc, "saving sinks");

  std::string sinks;
  for (const auto& [name, st] : sinks_)
    sinks += fmt::format("{}{} at {}", sinks.empty() ? "" : ", ", name, st.cursor);
  const std::string rows =
      last_seq_ == floor_
          ? fmt::format("no rows (next seq {})", last_seq_ + 1)
          : fmt::format("{} rows (seq {}..{})", last_seq_ - floor_, floor_ + 1, last_seq_);
  log::info("journal {}: {}, {} series, sinks: {}", path_, rows, series_.size(),
            sinks.empty() ? "none" : sinks);
  return {};
}

int SqliteJournal::registerSinks(std::map<std::string, SinkState, std::less<>> stored) {
  for (auto& [name, st] : sinks_) {
    auto it = stored.find(name);
    if (it == stored.end()) {
      st = SinkState{floor_, 0, true};  // a new sink gets what is still buffered
      continue;
    }
    st = it->second;
    if (st.cursor > last_seq_) {
      log::warn("journal {}: sink {} cursor {} is past the last seq {}; moved back to it", path_,
                name, st.cursor, last_seq_);
      st.cursor = last_seq_;
      st.dirty = true;
    } else if (st.cursor < floor_) {
      // Rows deleted while this sink was not configured: it never got them.
      log::error(
          "journal {}: sink {} was not configured while rows {}..{} were deleted; "
          "counted as dropped for it",
          path_, name, st.cursor + 1, floor_);
      st.dropped += floor_ - st.cursor;
      st.cursor = floor_;
      st.dirty = true;
    }
    stored.erase(it);
  }
  for (const auto& [name, st] : stored)
    log::notice(
        "journal {}: sink {} (cursor {}) is not configured; its row is kept but it holds "
        "no rows back",
        path_, name, st.cursor);
  bool dirty = false;
  for (const auto& [name, st] : sinks_) dirty = dirty || st.dirty;
  if (!dirty) return SQLITE_OK;
  const int rc = transaction([this] { return writeDirtySinks(); });
  if (rc == SQLITE_OK)
    for (auto& [name, st] : sinks_) st.dirty = false;
  return rc;
}

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

void SqliteJournal::rollback() {
  // SQLite may already have rolled the transaction back (e.g. after SQLITE_FULL or IOERR).
  if (sqlite3_get_autocommit(db_.get()) != 0) return;
  const int rc = sqlite::run(rollback_);
  if (rc != SQLITE_OK)
    log::error("journal {}: ROLLBACK failed: {}", path_, sqlite::describe(db_.get(), rc));
}

int SqliteJournal::insertRow(std::uint64_t seq, const PendingRow& p, const std::string* blob) {
  ResetGuard guard(insert_row_);
  int rc = insert_row_.bindAll(i64(seq), static_cast<std::int64_t>(p.s), p.t, p.v);
  if (rc == SQLITE_OK) rc = p.has_d ? insert_row_.bind(5, p.d) : insert_row_.bind(5, nullptr);
  if (rc == SQLITE_OK) rc = insert_row_.bind(6, static_cast<std::int64_t>(p.c));
  if (rc == SQLITE_OK) rc = blob ? insert_row_.bind(7, Blob{*blob}) : insert_row_.bind(7, nullptr);
  if (rc == SQLITE_OK) rc = insert_row_.bind(8, static_cast<std::int64_t>(p.kind));
  if (rc == SQLITE_OK) rc = insert_row_.step();
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int SqliteJournal::insertSeries(size_t id) {
  const Series& s = series_[id];
  const std::string tags = encodeTags(s.tags);
  ResetGuard guard(insert_series_);
  int rc = insert_series_.bindAll(static_cast<std::int64_t>(id), std::string_view(s.device),
                                  std::string_view(s.metric), Blob{tags});
  if (rc == SQLITE_OK) rc = insert_series_.step();
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int SqliteJournal::writeSink(const std::string& name, std::uint64_t cursor, std::uint64_t dropped) {
  ResetGuard guard(write_sink_);
  int rc = write_sink_.bindAll(std::string_view(name), i64(cursor), i64(dropped));
  if (rc == SQLITE_OK) rc = write_sink_.step();
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int SqliteJournal::writeDirtySinks() {
  for (const auto& [name, st] : sinks_) {
    if (!st.dirty) continue;
    const int rc = writeSink(name, st.cursor, st.dropped);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

SeriesId SqliteJournal::internSeries(const Series& series) {
  if (auto it = series_ids_.find(&series); it != series_ids_.end()) return it->second;
  if (series_.size() > std::numeric_limits<SeriesId>::max()) die("series id space exhausted");
  series_.push_back(series);
  const auto id = static_cast<SeriesId>(series_.size() - 1);
  series_ids_.emplace(&series_.back(), id);
  return id;
}

const Series& SqliteJournal::series(SeriesId id) const {
  if (id >= series_.size()) die(fmt::format("unknown series id {}", id));
  return series_[id];
}

std::uint64_t SqliteJournal::append(SeriesId series, double value, Nanos event_time,
                                    std::optional<Nanos> device_time, TimeReference reference) {
  if (series >= series_.size()) die(fmt::format("append with unknown series id {}", series));
  pending_.push_back(
      PendingRow{event_time, value, device_time ? wrapSub(event_time, *device_time) : 0, series,
                 device_time.has_value(), kRowReading, static_cast<std::uint8_t>(reference)});
  return last_seq_ + pending_.size();
}

std::uint64_t SqliteJournal::appendAggregate(SeriesId series, const WindowStats& window) {
  if (series >= series_.size()) die(fmt::format("aggregate with unknown series id {}", series));
  pending_blobs_.push_back(encodeWindow(window));
  pending_.push_back(PendingRow{window.start, std::numeric_limits<double>::quiet_NaN(), window.size,
                                series, true, kRowAggregate, 0});
  return last_seq_ + pending_.size();
}

std::uint64_t SqliteJournal::appendAlert(SeriesId series, Nanos time, double value,
                                         std::string_view json) {
  if (series >= series_.size()) die(fmt::format("alert with unknown series id {}", series));
  pending_blobs_.emplace_back(json);
  pending_.push_back(PendingRow{time, value, 0, series, false, kRowAlert, 0});
  return last_seq_ + pending_.size();
}

void SqliteJournal::putState(std::string_view key, std::string value) {
  auto it = pending_state_.find(key);
  if (it == pending_state_.end()) {
    auto cur = state_.find(key);
    if (cur != state_.end() && cur->second == value) return;
    pending_state_.emplace(std::string(key), std::move(value));
  } else {
    it->second = std::move(value);
  }
}

std::optional<std::string> SqliteJournal::state(std::string_view key) const {
  if (auto it = pending_state_.find(key); it != pending_state_.end()) return it->second;
  if (auto it = state_.find(key); it != state_.end()) return it->second;
  return std::nullopt;
}

bool SqliteJournal::commit() {
  bool dirty_sinks = false;
  for (const auto& [name, st] : sinks_) dirty_sinks = dirty_sinks || st.dirty;
  if (pending_.empty() && persisted_series_ == series_.size() && !dirty_sinks &&
      pending_state_.empty())
    return true;

  // Commit times never go back, so the markers stay ordered if the wall clock steps back.
  const Nanos now = clock_();
  const Nanos commit_time = has_marker_ ? std::max(now, last_marker_time_) : now;
  const bool new_marker = !pending_.empty() && (!has_marker_ || commit_time - last_marker_time_ >=
                                                                    kCommitTimeGranularity);
  const int rc = transaction([&] {
    int rc = SQLITE_OK;
    for (size_t id = persisted_series_; id < series_.size() && rc == SQLITE_OK; ++id)
      rc = insertSeries(id);
    std::uint64_t seq = last_seq_;
    size_t blob = 0;
    for (size_t i = 0; i < pending_.size() && rc == SQLITE_OK; ++i)
      rc = insertRow(++seq, pending_[i],
                     pending_[i].kind != kRowReading ? &pending_blobs_[blob++] : nullptr);
    for (auto it = pending_state_.begin(); it != pending_state_.end() && rc == SQLITE_OK; ++it) {
      ResetGuard guard(write_state_);
      rc = write_state_.bindAll(std::string_view(it->first), Blob{it->second});
      if (rc == SQLITE_OK) rc = write_state_.step();
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK && new_marker) {
      ResetGuard guard(insert_marker_);
      rc = insert_marker_.bindAll(i64(last_seq_ + 1), commit_time);
      if (rc == SQLITE_OK) rc = insert_marker_.step();
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK) rc = writeDirtySinks();
    return rc;
  });
  if (rc != SQLITE_OK) {
    ++failed_commits_;
    logLimited(commit_log_, "journal {}: commit of {} rows failed ({} in a row), kept pending: {}",
               path_, pending_.size(), failed_commits_, error_);
    return false;
  }
  if (failed_commits_ > 0) {
    log::notice("journal {}: commits work again after {} failures", path_, failed_commits_);
    failed_commits_ = 0;
  }
  last_seq_ += pending_.size();
  pending_.clear();
  pending_blobs_.clear();
  for (auto& [k, v] : pending_state_) state_[k] = std::move(v);
  pending_state_.clear();
  persisted_series_ = series_.size();
  if (new_marker) {
    has_marker_ = true;
    last_marker_time_ = commit_time;
  }
  for (auto& [name, st] : sinks_) st.dirty = false;
  ++commits_;
  return true;
}

void SqliteJournal::read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) {
  readRows(read_, after, limit, out);
}

void SqliteJournal::readAlerts(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) {
  readRows(read_alerts_, after, limit, out);
}

void SqliteJournal::readRows(Stmt& stmt, std::uint64_t after, size_t limit,
                             std::vector<ReadingRecord>& out) {
  // Records are reused (their strings keep their capacity), so a sink's steady state reads
  // without allocating.
  size_t n = 0;
  if (limit > 0 && after < last_seq_) {
    const auto cap = static_cast<size_t>(std::min<std::uint64_t>(limit, last_seq_ - after));
    if (out.size() < cap && &stmt == &read_) out.reserve(cap);
    ResetGuard guard(stmt);
    int rc = stmt.bindAll(i64(after), i64(std::min<std::uint64_t>(limit, INT64_MAX)));
    if (rc == SQLITE_OK) {
      while ((rc = stmt.step()) == SQLITE_ROW) {
        const std::int64_t sid = stmt.columnInt(1);
        if (sid < 0 || static_cast<std::uint64_t>(sid) >= series_.size()) {
          logLimited(read_log_, "journal {}: row {} refers to unknown series {}; skipped", path_,
                     stmt.columnInt(0), sid);
          continue;
        }
        if (n == out.size()) out.emplace_back();
        ReadingRecord& r = out[n];
        r.seq = static_cast<std::uint64_t>(stmt.columnInt(0));
        r.series = &series_[static_cast<size_t>(sid)];
        r.event_time = stmt.columnInt(2);
        r.value = stmt.columnType(3) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                    : stmt.columnDouble(3);
        const std::int64_t k = stmt.columnInt(7);
        r.device_time.reset();
        r.reference = TimeReference::kReceive;
        if (k == kRowReading) {
          const std::int64_t c = stmt.columnInt(5);
          if (c < 0 || c > std::numeric_limits<std::uint8_t>::max()) {
            logLimited(read_log_, "journal {}: row {} has time reference {}; skipped", path_, r.seq,
                       c);
            continue;
          }
          r.kind = RecordKind::kReading;
          r.reference = static_cast<TimeReference>(c);
          if (stmt.columnType(4) != SQLITE_NULL)
            r.device_time = wrapSub(r.event_time, stmt.columnInt(4));
        } else if (k == kRowAggregate) {
          r.kind = RecordKind::kAggregate;
          r.window = WindowStats{};
          r.window.start = r.event_time;
          r.window.size = stmt.columnInt(4);
          if (!decodeWindow(stmt.columnBlob(6), r.window)) {
            logLimited(read_log_, "journal {}: aggregate row {} cannot be decoded; skipped", path_,
                       r.seq);
            continue;
          }
        } else if (k == kRowAlert) {
          r.kind = RecordKind::kAlert;
          r.alert.assign(stmt.columnBlob(6));
        } else {
          logLimited(read_log_, "journal {}: row {} has unknown kind {}; skipped", path_, r.seq, k);
          continue;
        }
        ++n;
      }
    }
    if (rc != SQLITE_DONE)
      logLimited(read_log_, "journal {}: reading after seq {} failed after {} rows: {}", path_,
                 after, n, sqlite::describe(db_.get(), rc));
  }
  out.resize(n);
}

std::uint64_t SqliteJournal::cursor(std::string_view sink) const {
  auto it = sinks_.find(sink);
  return it == sinks_.end() ? 0 : it->second.cursor;
}

void SqliteJournal::setCursor(std::string_view sink, std::uint64_t seq) {
  auto it = sinks_.find(sink);
  if (it == sinks_.end()) {
    logLimited(cursor_log_, "journal {}: cursor move for unconfigured sink {}; ignored", path_,
               sink);
    return;
  }
  if (seq > last_seq_)
    die(fmt::format("sink {} confirmed seq {} beyond the last committed seq {}", sink, seq,
                    last_seq_));
  if (seq > it->second.cursor) {
    it->second.cursor = seq;
    it->second.dirty = true;
  }
}

bool SqliteJournal::removeThrough(std::uint64_t upto, DropTally* tally) {
  struct Change {
    const std::string* name;
    SinkState* state;
    std::uint64_t cursor, dropped;
  };
  std::vector<Change> changes;
  for (auto& [name, st] : sinks_) {
    Change c{&name, &st, st.cursor, st.dropped};
    if (st.cursor < upto) {
      c.dropped += upto - std::max(st.cursor, floor_);
      c.cursor = upto;
    }
    // Dirty cursors go too: a persisted cursor must never be below the floor.
    if (c.cursor != st.cursor || st.dirty) changes.push_back(c);
  }
  const int rc = transaction([&] {
    int rc;
    {
      ResetGuard guard(delete_rows_);
      rc = delete_rows_.bind(1, i64(upto));
      if (rc == SQLITE_OK) rc = delete_rows_.step();
    }
    if (rc == SQLITE_DONE) {
      ResetGuard guard(delete_markers_);
      rc = delete_markers_.bind(1, i64(upto + 1));
      if (rc == SQLITE_OK) rc = delete_markers_.step();
    }
    if (rc == SQLITE_DONE) {
      ResetGuard guard(write_floor_);
      rc = write_floor_.bind(1, i64(upto));
      if (rc == SQLITE_OK) rc = write_floor_.step();
    }
    if (rc != SQLITE_DONE) return rc;
    for (const Change& c : changes) {
      rc = writeSink(*c.name, c.cursor, c.dropped);
      if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
  });
  if (rc != SQLITE_OK) {
    logLimited(retention_log_, "journal {}: deleting rows {}..{} failed: {}", path_, floor_ + 1,
               upto, error_);
    return false;
  }
  for (const Change& c : changes) {
    if (tally && c.dropped > c.state->dropped)
      tally->unsent[*c.name] += c.dropped - c.state->dropped;
    c.state->cursor = c.cursor;
    c.state->dropped = c.dropped;
    c.state->dirty = false;
  }
  if (tally) {
    if (tally->rows == 0) tally->first = floor_ + 1;
    tally->rows += upto - floor_;
    tally->last = upto;
  }
  floor_ = upto;
  return true;
}

bool SqliteJournal::removeUpTo(std::uint64_t limit, std::uint64_t step, DropTally* tally,
                               std::uint64_t& removed) {
  limit = std::min(limit, last_seq_);
  for (int i = 0; i < kMaxTxnsPerPhase && floor_ < limit; ++i) {
    const std::uint64_t before = floor_;
    if (!removeThrough(std::min(limit, floor_ + step), tally)) return false;
    removed += floor_ - before;
  }
  return true;
}

bool SqliteJournal::ageLimit(Nanos now, std::uint64_t& limit) {
  if (!has_marker_ || last_seq_ == floor_) return false;
  // Rows of a marker with time t were committed before t + granularity; those whose marker is
  // at or before `cutoff` are certainly older than max_age.
  if (now < std::numeric_limits<Nanos>::min() + options_.max_age + kCommitTimeGranularity)
    return false;
  const Nanos cutoff = now - options_.max_age - kCommitTimeGranularity;
  ResetGuard guard(marker_after_);
  int rc = marker_after_.bind(1, cutoff);
  if (rc == SQLITE_OK) rc = marker_after_.step();
  if (rc == SQLITE_ROW) {
    limit = static_cast<std::uint64_t>(std::max<std::int64_t>(marker_after_.columnInt(0) - 1, 0));
    return true;
  }
  if (rc == SQLITE_DONE) {
    limit = last_seq_;  // every committed row is old
    return true;
  }
  logLimited(retention_log_, "journal {}: reading commit times failed: {}", path_,
             sqlite::describe(db_.get(), rc));
  return false;
}

bool SqliteJournal::usedBytes(std::uint64_t& out) const {
  std::int64_t pages = 0, free_pages = 0;
  for (auto [stmt, value] :
       {std::pair{&page_count_, &pages}, std::pair{&freelist_count_, &free_pages}}) {
    ResetGuard guard(*stmt);
    const int rc = stmt->step();
    if (rc != SQLITE_ROW) {
      log::error("journal {}: reading the page count failed: {}", path_,
                 sqlite::describe(db_.get(), rc));
      return false;
    }
    *value = stmt->columnInt(0);
  }
  out = static_cast<std::uint64_t>(std::max<std::int64_t>(0, pages - free_pages)) *
        static_cast<std::uint64_t>(page_size_);
  return true;
}

std::optional<Nanos> SqliteJournal::commitTimeOf(std::uint64_t seq) const {
  ResetGuard guard(marker_at_);
  int rc = marker_at_.bind(1, i64(seq));
  if (rc == SQLITE_OK) rc = marker_at_.step();
  if (rc == SQLITE_ROW) return marker_at_.columnInt(0);
  if (rc != SQLITE_DONE)
    log::error("journal {}: reading commit times failed: {}", path_,
               sqlite::describe(db_.get(), rc));
  return std::nullopt;
}

void SqliteJournal::reportDrops(const DropTally& t, std::string_view why) {
  if (t.rows == 0) return;
  std::string who;
  for (const auto& [name, n] : t.unsent)
    who += fmt::format("{}{} {}", who.empty() ? "" : ", ", name, n);
  if (sinks_.empty()) {
    log::error("journal {}: dropped {} rows (seq {}..{}) {}; no sink is configured", path_, t.rows,
               t.first, t.last, why);
  } else if (who.empty()) {
    log::notice("journal {}: removed {} rows (seq {}..{}) {}; every sink had sent them", path_,
                t.rows, t.first, t.last, why);
  } else {
    log::error("journal {}: dropped {} rows (seq {}..{}) {}; unsent rows lost per sink: {}", path_,
               t.rows, t.first, t.last, why, who);
  }
}

std::uint64_t SqliteJournal::enforceRetention(Nanos now, size_t step) {
  const std::uint64_t step_rows = std::max<std::uint64_t>(step, 1);
  std::uint64_t removed = 0;
  bool ok = true;

  // 1. Rows every configured sink has confirmed.
  if (!sinks_.empty()) {
    std::uint64_t confirmed = last_seq_;
    for (const auto& [name, st] : sinks_) confirmed = std::min(confirmed, st.cursor);
    ok = removeUpTo(confirmed, step_rows, nullptr, removed);
  }

  // 2. Rows committed longer than max_age ago.
  std::uint64_t limit = 0;
  if (ok && options_.max_age > 0 && ageLimit(now, limit) && limit > floor_) {
    DropTally tally;
    ok = removeUpTo(limit, step_rows, &tally, removed);
    reportDrops(tally, fmt::format("committed more than buffer.max_age ({}s) ago",
                                   options_.max_age / kNanosPerSecond));
  }

  // 3. Pages in use over max_size: drop the oldest rows down to 90% of it, so this does not
  //    run again at every call.
  std::uint64_t used = 0;
  if (ok && options_.max_size_bytes > 0 && usedBytes(used) && used > options_.max_size_bytes) {
    const std::uint64_t target = options_.max_size_bytes / 10 * 9;
    const std::uint64_t used_before = used;
    DropTally tally;
    for (int i = 0; i < kMaxTxnsPerPhase && used > target; ++i) {
      const std::uint64_t rows = last_seq_ - floor_;
      if (rows == 0) {
        logLimited(retention_log_, "journal {}: {} bytes in use and no row left to drop", path_,
                   used);
        break;
      }
      const std::uint64_t per_row = std::max<std::uint64_t>(1, used / rows);
      std::uint64_t n = (used - target + per_row - 1) / per_row;
      n += n / 16 + 16;  // partly emptied pages free nothing: overshoot a little
      const std::uint64_t before = floor_;
      if (!removeThrough(floor_ + std::min({n, step_rows, rows}), &tally) || !usedBytes(used))
        break;
      removed += floor_ - before;
    }
    reportDrops(tally, fmt::format("over buffer.max_size ({} bytes in use, cap {})", used_before,
                                   options_.max_size_bytes));
  }

  maybeCheckpoint();
  return removed;
}

void SqliteJournal::maybeCheckpoint() {
  if (wal_frames_ < kRetentionCheckpointFrames) return;
  int log_frames = 0, done = 0;
  const int rc =
      sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done);
  if (rc != SQLITE_OK) {
    logLimited(retention_log_, "journal {}: WAL checkpoint failed: {}", path_,
               sqlite::describe(db_.get(), rc));
  } else if (done == log_frames) {
    wal_frames_ = 0;  // the next commit starts the WAL over
  }
}

int SqliteJournal::walHook(void* self, sqlite3* db, const char* name, int frames) {
  auto* j = static_cast<SqliteJournal*>(self);
  j->wal_frames_ = frames;
  if (frames >= kAutoCheckpointFrames) {
    const int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK)
      j->logLimited(j->retention_log_, "journal {}: WAL checkpoint failed: {}", j->path_,
                    sqlite::describe(db, rc));
  }
  return SQLITE_OK;  // an error here would fail the commit that has already succeeded
}

JournalStats SqliteJournal::stats() const {
  JournalStats s;
  s.last_seq = last_seq_;
  s.rows = last_seq_ - floor_;
  std::error_code ec;
  for (const fs::path& p : {options_.path, withSuffix(options_.path, "-wal")}) {
    const auto size = fs::file_size(p, ec);
    if (!ec) s.file_bytes += size;
  }
  usedBytes(s.used_bytes);
  s.commits = commits_;
  s.moved_aside = moved_aside_;
  for (const auto& [name, st] : sinks_) {
    SinkBacklog& b = s.sinks[name];
    b.cursor = st.cursor;
    b.dropped = st.dropped;
    b.backlog = last_seq_ - std::min(st.cursor, last_seq_);
    if (b.backlog > 0) b.oldest_unsent = commitTimeOf(std::max(st.cursor, floor_) + 1);
  }
  return s;
}

}  // namespace

std::unique_ptr<Journal> Journal::open(const JournalOptions& options) {
  if (options.path.empty()) throw JournalError("journal: no path given");
  const std::string path = options.path.string();
  std::error_code ec;
  if (const fs::path dir = options.path.parent_path(); !dir.empty()) {
    fs::create_directories(dir, ec);
    if (ec)
      throw JournalError(fmt::format("journal {}: cannot create directory {}: {}", path,
                                     dir.string(), ec.message()));
  }
  auto journal = std::make_unique<SqliteJournal>(options);
  OpenResult r = journal->open();
  if (r.outcome == Outcome::kFatal)
    throw JournalError(fmt::format("journal {}: {}", path, r.reason));
  if (r.outcome == Outcome::kCorrupt) {
    journal->closeWithoutCheckpoint();
    journal.reset();
    const fs::path moved = moveAside(options.path, options.clock ? options.clock() : wallNow());
    log::error("journal {} is unusable ({}); moved it aside to {} and started a new journal", path,
               r.reason, moved.string());
    journal = std::make_unique<SqliteJournal>(options);
    r = journal->open();
    if (r.outcome != Outcome::kOk)
      throw JournalError(fmt::format("journal {}: cannot start a new journal: {}", path, r.reason));
    journal->setMovedAside(moved);
  }
  return journal;
}

}  // namespace gw::buffer
