// The journal's schema (version 8), the steps that upgrade older files in place, and the
// statements prepared against it.
#include <fmt/core.h>

#include <iterator>
#include <string>

#include "buffer/sqlite_journal.h"

namespace gw::buffer::detail {

// Schema version 8. One row per record, in segment tables r_<n> (r_0, r_1, ...): each holds a
// contiguous range of seqs, the newest one takes new rows until it holds segment_rows rows, and a
// segment is emptied whole (DELETE without WHERE: SQLite frees its pages without writing them)
// once every sink confirmed all of its rows (journal_segments.cpp). Emptied tables are reused,
// so the schema grows only with the backlog. seq is the rowid, so a reading is a few varints and
// a double:
//   s  series id, t event time (ns), v value (NULL for NaN),
//   d  event time - device time (ns; NULL when the payload had no device time). Usually small.
//   c  a reading's TimeReference, its uint8 value as is (so a new reference needs no schema
//      change); 0 in other records. Since version 7 a reading of reference 0..3 may take a
//      compact form, marked by a negative c (-1..-72, one byte; RowForm in sqlite_journal.h):
//      - a value that is an exact decimal m / 10^k (21.37, 0.5, 1e-7; k 1..8, |m| < 2^47) is
//        stored as m in v, an integer of 1-6 bytes where the REAL took 8;
//      - when the device time is in whole ms (JSON "ts" in ms), t holds it in ms (6 bytes where
//        the event time in ns took 8); the event time is t * 10^6 + d.
//      A typical reading went from ~36 to ~28 bytes in its page (journal_rows_test.cpp).
//   x  NULL for a reading (one header byte); an aggregate's statistics (encodeWindow; since
//      version 7 decimals in a few bytes each) or an alert's JSON. An aggregate's t is the window
//      start and d the window size; since version 7 both in ms when c = -1 (whole ms: 10 s
//      windows), in ns when c = 0. A 10 s window of the default statistics went from ~68 to ~50
//      bytes in its page
//   k  the record kind (RowKind): 0 reading, 1 aggregate, 2 alert. Last, because a version 2
//      file gains it by ALTER TABLE ADD COLUMN, which rewrites no reading: rows without it read
//      the default 0.
//   Integers 0 and 1 are stored in the record header alone, so c and k cost a reading 2 bytes.
// r_<n>_alerts: a partial index over the few alert rows, for the notifiers' outbox reads.
//   Queries must spell `k = 2` literally for SQLite to use it.
// state: small named values the pipeline persists with its commits (window watermark, …).
// alert_firing: one row per alert firing now, k its dedup key, x its trigger event (the outbox
//   JSON); a row is inserted or deleted in the transaction of the event that changed it
//   (journal_alerts.cpp), so 100,000 alerts firing cost a change of one row per event, not a
//   rewrite of the set.
// series: one row per series id (dense, from 0), tags encoded (encodeTags). series_name on
//   (device, metric, tags) (version 8) finds a series by name: past JournalOptions::pinned_series
//   the series table in memory is a cache and SQLite the authority (journal_series.cpp); it also
//   finds a device's series for `gatewayctl tail`. Not UNIQUE: a lookup that failed on an I/O
//   error gives the name a second id rather than failing every commit after.
// commits: commit wall time per group of commits; rows first_seq.. were committed in
//   [t, t + kCommitTimeGranularity). Pruned with the rows it covers.
// meta 'floor': every row <= floor was deleted, so seq continues after an emptied table.
// dead: the dead letters (buffer/dead_letters.h): bad input with its time, source, topic or
//   path (w), reason, device, full size and an escaped excerpt (x); capped by
//   DeadLetterTable::write(), oldest first.
//
// Older versions are upgraded in place on open, in one transaction (kUpgrades):
//   1  readings only: no x, no r_alerts, no state.
//   2  f instead of c and k: a reading's TimeReference (0, 1) or the kind of another record
//      (2 aggregate, 3 alert), so a third reference would have read back as an aggregate.
//   3  no dead table.
//   4  one table r (with index r_alerts) for every row; it becomes segment r_0.
//   5  the firing alerts in state 'alerts.firing' (newline-separated JSON of the whole set,
//      rewritten while it changed); they become rows of alert_firing.
//   6  every reading in the plain form (c >= 0), which version 7 reads the same: none is
//      rewritten.
//   7  no index series_name: it is created (no row is rewritten).
const char* const kSchema = R"sql(
BEGIN IMMEDIATE;
CREATE TABLE r_0(seq INTEGER PRIMARY KEY, s INTEGER NOT NULL, t INTEGER NOT NULL, v REAL,
                 d INTEGER, c INTEGER NOT NULL, x BLOB, k INTEGER NOT NULL DEFAULT 0);
CREATE INDEX r_0_alerts ON r_0(k) WHERE k = 2;
CREATE TABLE state(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE alert_firing(k TEXT PRIMARY KEY, x BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE series(id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
                    tags BLOB NOT NULL);
CREATE INDEX series_name ON series(device, metric, tags);
CREATE TABLE sinks(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL, dropped INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE commits(first_seq INTEGER PRIMARY KEY, t INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(k, v) VALUES('floor', 0);
CREATE TABLE dead(id INTEGER PRIMARY KEY, t INTEGER NOT NULL, source TEXT NOT NULL,
                  w TEXT NOT NULL, reason TEXT NOT NULL, device TEXT NOT NULL,
                  size INTEGER NOT NULL, x TEXT NOT NULL);
PRAGMA application_id = 1196902961;
PRAGMA user_version = 8;
COMMIT;
)sql";
static_assert(kApplicationId == 1196902961 && kSchemaVersion == 8, "update kSchema");

std::string segmentTableSql(int n) {
  return fmt::format(
      "CREATE TABLE r_{0}(seq INTEGER PRIMARY KEY, s INTEGER NOT NULL, t INTEGER NOT NULL, "
      "v REAL, d INTEGER, c INTEGER NOT NULL, x BLOB, k INTEGER NOT NULL DEFAULT 0); "
      "CREATE INDEX r_{0}_alerts ON r_{0}(k) WHERE k = 2;",
      n);
}

namespace {

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
    // 3 to 4: the dead letters.
    R"sql(
CREATE TABLE dead(id INTEGER PRIMARY KEY, t INTEGER NOT NULL, source TEXT NOT NULL,
                  w TEXT NOT NULL, reason TEXT NOT NULL, device TEXT NOT NULL,
                  size INTEGER NOT NULL, x TEXT NOT NULL);
)sql",
    // 4 to 5: table r becomes the first segment; no row is rewritten (the index only holds the
    // few alerts).
    R"sql(
DROP INDEX r_alerts;
ALTER TABLE r RENAME TO r_0;
CREATE INDEX r_0_alerts ON r_0(k) WHERE k = 2;
)sql",
    // 5 to 6: the table of firing alerts; convertFiringState() fills it from the state value.
    R"sql(
CREATE TABLE alert_firing(k TEXT PRIMARY KEY, x BLOB NOT NULL) WITHOUT ROWID;
)sql",
    // 6 to 7: decimal values (c < 0) in new rows only; the old rows (c >= 0) read as before.
    "",
    // 7 to 8: series found by name in SQLite (past pinned_series); no row is rewritten. (IF NOT
    // EXISTS: the tests' older fixtures are made from a journal of this version.)
    R"sql(
CREATE INDEX IF NOT EXISTS series_name ON series(device, metric, tags);
)sql",
};
static_assert(std::size(kUpgrades) == kSchemaVersion - 1, "one upgrade step per version");

}  // namespace

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
  if ((rc = convertFiringState()) != SQLITE_OK) return fail(failed(rc, what));
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
      {&insert_series_, "INSERT INTO series(id, device, metric, tags) VALUES(?, ?, ?, ?)"},
      {&insert_marker_, "INSERT INTO commits(first_seq, t) VALUES(?, ?)"},
      {&write_sink_,
       "INSERT INTO sinks(name, cursor, dropped) VALUES(?, ?, ?) ON CONFLICT(name) DO UPDATE "
       "SET cursor = excluded.cursor, dropped = excluded.dropped"},
      {&write_floor_, "INSERT OR REPLACE INTO meta(k, v) VALUES('floor', ?)"},
      {&write_state_, "INSERT OR REPLACE INTO state(k, v) VALUES(?, ?)"},
      // Keeps the marker that covers the first remaining row.
      {&delete_markers_,
       "DELETE FROM commits WHERE first_seq < "
       "(SELECT max(first_seq) FROM commits WHERE first_seq <= ?)"},
      {&marker_after_, "SELECT first_seq FROM commits WHERE t > ? ORDER BY first_seq LIMIT 1"},
      {&marker_at_, "SELECT t FROM commits WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1"},
      {&page_count_, "PRAGMA page_count"},
      {&freelist_count_, "PRAGMA freelist_count"},
      {&put_firing_, "INSERT OR REPLACE INTO alert_firing(k, x) VALUES(?, ?)"},
      {&delete_firing_, "DELETE FROM alert_firing WHERE k = ?"},
      // journal_series.cpp: through index series_name.
      {&find_series_, "SELECT id FROM series WHERE device = ? AND metric = ? AND tags = ?"},
      {&load_series_, "SELECT device, metric, tags FROM series WHERE id = ?"},
      {&device_series_, "SELECT id FROM series WHERE device = ? AND id >= ?"},
  };
  for (const auto& [stmt, sql] : all) {
    const int rc = stmt->prepare(db, sql);
    if (rc != SQLITE_OK) return rc;
  }
  return dead_letters_.prepare(db);
}

namespace {

std::string insertManySql(const std::string& table) {
  std::string sql = fmt::format("INSERT INTO {}(seq, s, t, v, d, c, x, k) VALUES", table);
  for (size_t i = 0; i < kRowsPerInsert; ++i)
    sql += i ? ", (?, ?, ?, ?, ?, ?, ?, ?)" : "(?, ?, ?, ?, ?, ?, ?, ?)";
  return sql;
}

}  // namespace

int SqliteJournal::prepareSegment(Segment& seg) {
  sqlite3* db = db_.get();
  const std::string t = fmt::format("r_{}", seg.n);
  const std::pair<Stmt*, std::string> all[] = {
      {&seg.insert, fmt::format("INSERT INTO {}(seq, s, t, v, d, c, x, k) "
                                "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                                t)},
      {&seg.insert_many, insertManySql(t)},
      {&seg.read, fmt::format("SELECT seq, s, t, v, d, c, x, k FROM {} WHERE seq > ? "
                              "ORDER BY seq LIMIT ?",
                              t)},
      // `k = 2` (kRowAlert) spelled out: the partial index is used only then.
      {&seg.read_alerts, fmt::format("SELECT seq, s, t, v, d, c, x, k FROM {} WHERE k = 2 AND "
                                     "seq > ? ORDER BY seq LIMIT ?",
                                     t)},
      // Without WHERE: SQLite's truncate optimisation frees the pages without visiting rows.
      {&seg.clear, fmt::format("DELETE FROM {}", t)},
      {&seg.clear_through, fmt::format("DELETE FROM {} WHERE seq <= ?", t)},
  };
  for (const auto& [stmt, sql] : all) {
    const int rc = stmt->prepare(db, sql);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

}  // namespace gw::buffer::detail
