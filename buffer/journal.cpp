// The journal's data path: append, commit, read, sink cursors, retention and stats. The
// class is declared in sqlite_journal.h; opening, the schema and the BLOB encodings live in
// journal_open.cpp, journal_schema.cpp and journal_codec.cpp.
#include <fmt/core.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <system_error>
#include <utility>

#include "buffer/sqlite_journal.h"
#include "core/log.h"
#include "core/steady.h"

namespace gw::buffer::detail {
namespace {

// The WAL is checkpointed by size (JournalOptions::wal_checkpoint_bytes), not by time. Checkpoints
// run on WalCheckpointer's thread; should it fall this far behind (or fail), the event loop
// checkpoints itself, as a backstop.
constexpr int kInlineCheckpointFactor = 2;
constexpr std::uint64_t kMinFreeStepRows = 10000;  // rows per delete when commit() keeps min_free
constexpr int kMaxTxnsPerPhase = 16;
// Cursor moves ride along with commits of rows at most this often (each write is a page of the
// WAL: ~8 bytes per reading at 10,000/s and 20 commits/s). A persisted cursor that lags only
// makes a sink send those rows again after a crash; it is written whenever rows are deleted
// (never below the floor) and by a commit without rows (e.g. at stop).
constexpr Nanos kCursorWriteInterval = kNanosPerSecond;

[[noreturn]] void die(const std::string& what) {
  log::error("journal: bug: {}", what);
  std::abort();
}

// Confirmed rows are deleted in bounded steps (design: "Rows below every cursor are deleted in
// small steps"; issue 13: they are deleted on the event loop). Emptying a segment makes SQLite
// read every page of it (~10 µs each, its pages are no longer in the 1 MiB cache): a step takes
// whole segments of at most kRetentionStepRows rows together (at least one), or, idle, at most
// kIdleStepRows rows of a segment confirmed only in part (a ranged DELETE rewrites each page it
// touches: 45,760 rows took 80-140 ms on the loop).
constexpr std::uint64_t kRetentionStepRows = 65536;
constexpr std::uint64_t kIdleStepRows = 2048;

template <class Segments>
std::uint64_t retentionStep(const Segments& segments, std::uint64_t floor, std::uint64_t limit,
                            bool rows_too) {
  std::uint64_t to = floor, rows = 0;
  for (const auto& seg : segments) {
    if (seg->rows() == 0) continue;
    if (seg->last > limit) break;
    if (rows > 0 && rows + seg->rows() > kRetentionStepRows) break;
    rows += seg->rows();
    to = seg->last;
  }
  // No whole segment (the limit is within the oldest one with rows): part of it, in small steps.
  if (to == floor && rows_too && limit > floor) return std::min(limit, floor + kIdleStepRows);
  return std::max(to, floor);
}

}  // namespace

void SqliteJournal::rollback() {
  // SQLite may already have rolled the transaction back (e.g. after SQLITE_FULL or IOERR).
  if (sqlite3_get_autocommit(db_.get()) != 0) return;
  const int rc = sqlite::run(rollback_);
  if (rc != SQLITE_OK)
    log::error("journal {}: ROLLBACK failed: {}", path_, sqlite::describe(db_.get(), rc));
}

int SqliteJournal::bindRow(Stmt& st, int base, std::uint64_t seq, const PendingRow& p,
                           const std::string* blob) {
  // A reading in the compact form of schema 7 (compactReading(), journal_codec.cpp).
  std::int64_t t = p.t;
  double v = p.v;
  std::int64_t c = p.c;
  std::int64_t d = p.d;
  if (p.kind == kRowReading) compactReading(t, v, c, p.has_d ? &p.d : nullptr);
  if (p.kind == kRowAggregate && p.has_d) compactAggregate(t, d, c);
  int rc = st.bind(base + 1, i64(seq));
  if (rc == SQLITE_OK) rc = st.bind(base + 2, static_cast<std::int64_t>(p.s));
  if (rc == SQLITE_OK) rc = st.bind(base + 3, t);
  if (rc == SQLITE_OK) rc = st.bind(base + 4, v);
  if (rc == SQLITE_OK) rc = p.has_d ? st.bind(base + 5, d) : st.bind(base + 5, nullptr);
  if (rc == SQLITE_OK) rc = st.bind(base + 6, c);
  if (rc == SQLITE_OK) rc = blob ? st.bind(base + 7, Blob{*blob}) : st.bind(base + 7, nullptr);
  if (rc == SQLITE_OK) rc = st.bind(base + 8, static_cast<std::int64_t>(p.kind));
  return rc;
}

int SqliteJournal::insertRow(std::uint64_t seq, const PendingRow& p, const std::string* blob) {
  if (segments_.empty()) return SQLITE_ERROR;  // no segment table could be created
  Stmt& insert = segments_.back()->insert;
  ResetGuard guard(insert);
  int rc = bindRow(insert, 0, seq, p, blob);
  if (rc == SQLITE_OK) rc = insert.step();
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

// Many rows per INSERT: each run of a statement has a fixed cost, and Debian builds SQLite
// without lookaside memory (SQLITE_OMIT_LOOKASIDE), so a one-row INSERT costs 3 heap
// allocations and ~7,000 instructions (tests/bench/callgrind_bench.py, pi_bench --count-allocs).
// `rows` comes back lower when commit_budget ran out (only within the first `splittable`).
// The series rows a statement's rows refer to go just before it (issue 13: the first flood at
// 100,000 series brings ~1,000 new series per commit, and they were not within the budget).
int SqliteJournal::insertPending(size_t& rows, size_t splittable, Nanos start, size_t& series_to) {
  if (rows == 0) return SQLITE_OK;
  if (segments_.empty()) return SQLITE_ERROR;
  const Nanos budget = options_.commit_budget;
  Stmt& many = segments_.back()->insert_many;
  std::uint64_t seq = last_seq_;
  size_t i = 0, blob = 0;
  auto blobOf = [&](const PendingRow& p) {
    return p.kind != kRowReading ? &pending_blobs_[blob++] : nullptr;
  };
  int rc = SQLITE_OK;
  while (i < rows && rc == SQLITE_OK) {
    const size_t n = std::min(kRowsPerInsert, rows - i);
    SeriesId top = 0;
    for (size_t j = i; j < i + n; ++j) top = std::max(top, pending_[j].s);
    if (top >= series_to) rc = insertSeriesUpTo(series_to, top + 1);
    if (n == kRowsPerInsert) {
      ResetGuard guard(many);
      for (size_t j = 0; j < n && rc == SQLITE_OK; ++j)
        rc =
            bindRow(many, static_cast<int>(8 * j), ++seq, pending_[i + j], blobOf(pending_[i + j]));
      if (rc == SQLITE_OK) rc = many.step();
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
    } else {
      for (size_t j = i; j < i + n && rc == SQLITE_OK; ++j)
        rc = insertRow(++seq, pending_[j], blobOf(pending_[j]));
    }
    i += n;
    // Past commit_budget, within the readings that may be split off: the rest waits for the
    // next commit (issue 13: one clock read per 32 rows).
    if (budget > 0 && i < rows && i <= splittable && steadyNow() - start >= budget) rows = i;
  }
  return rc;
}

size_t SqliteJournal::commitRows(size_t& splittable) const {
  splittable = 0;
  if (options_.max_commit_rows == 0 && options_.commit_budget == 0) return pending_.size();
  const size_t cap = options_.max_commit_rows > 0 ? options_.max_commit_rows : pending_.size();
  // Only readings are split off: an aggregate or alert row goes with the windows' and alerts'
  // state of the same moment, which the caller put for the whole of pending_ (Journal::commit).
  while (splittable < std::min(cap, pending_.size()) && pending_[splittable].kind == kRowReading)
    ++splittable;
  // An alert row follows the reading that triggered it, and alerts are not re-evaluated from
  // the journal after a restart: that reading goes with it (committed without it, it would be
  // acknowledged and its alert lost in a crash). The readings before it may go on their own
  // (issue 13: a burst of alerts at 100,000 series made a commit of every pending row).
  if (splittable < pending_.size() && pending_[splittable].kind == kRowAlert && splittable > 0)
    --splittable;
  return pending_.size() > cap && splittable > 0 ? splittable : pending_.size();
}

void SqliteJournal::keepCommittedPrefix(size_t rows) {
  if (rows == 0) return;  // only series were written: the committed tail stays as it is
  tail_after_ = last_seq_ - rows;
  tail_.assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(rows));
  tail_blobs_.clear();  // readings have none
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(rows));
}

int SqliteJournal::insertSeriesUpTo(size_t& series_to, size_t upto) {
  int rc = SQLITE_OK;
  for (; series_to < upto && rc == SQLITE_OK; ++series_to) rc = insertSeries(series_to);
  return rc;
}

// Series not yet written in kRowsPerInsert at a time, in id order, until commit_budget (from
// `start`) is spent; at least one such step when `progress` (0 = all of them).
int SqliteJournal::insertNewSeries(size_t& series_to, Nanos start, bool progress) {
  const Nanos budget = options_.commit_budget;
  int rc = SQLITE_OK;
  bool first = true;
  while (series_to < series_.size() && rc == SQLITE_OK) {
    if (budget > 0 && !(first && progress) && steadyNow() - start >= budget) break;
    first = false;
    rc = insertSeriesUpTo(series_to, std::min(series_.size(), series_to + kRowsPerInsert));
  }
  return rc;
}

size_t SqliteJournal::rowsWithSeriesBelow(size_t rows, size_t upto) const {
  size_t n = 0;
  while (n < rows && pending_[n].s < upto) ++n;
  return n;
}

int SqliteJournal::insertSeries(size_t id) {
  // Not written yet: in memory (the series table evicts only what is written).
  const InternedSeries* p = series_.get(static_cast<SeriesId>(id));
  if (p == nullptr) die(fmt::format("series {} not written and not in memory", id));
  const InternedSeries& s = *p;
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
    // The pending value shadows the committed one (state()) until a commit replaces it: the
    // old copy need not be held beside it (alerts.firing: ~33 MB at 100,000 firing; issue 13).
    if (cur != state_.end()) std::string().swap(cur->second);
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
  if (detached_) {  // the file was pulled away and is not written back yet (journal_guard.cpp)
    ++failed_commits_;
    return false;
  }
  bool dirty_sinks = false;
  for (const auto& [name, st] : sinks_) dirty_sinks = dirty_sinks || st.dirty;
  if (pending_.empty() && persisted_series_ == series_.size() && !dirty_sinks &&
      pending_state_.empty() && !dead_letters_.dirty() && pending_firing_.empty())
    return true;

  // buffer.min_free is checked before every commit, not only by the retention pass once a
  // second: at tens of thousands of readings a second the journal can outgrow a small headroom
  // within that second, and on a full disk the checkpoint that would give space back cannot run
  // either (journal_disk.cpp). Above min_free this is one statvfs().
  keepFree(kMinFreeStepRows);

  // Commit times never go back, so the markers stay ordered if the wall clock steps back.
  const Nanos now = clock_();
  const Nanos commit_time = has_marker_ ? std::max(now, last_marker_time_) : now;
  const bool new_marker = !pending_.empty() && (!has_marker_ || commit_time - last_marker_time_ >=
                                                                    kCommitTimeGranularity);
  // Confirmed rows left by enforceRetention() go with this transaction, whole segments: no
  // synced transaction of their own.
  const std::uint64_t retire_to =
      retire_upto_ > floor_ ? retentionStep(segments_, floor_, retire_upto_, false) : floor_;
  if (!pending_.empty()) maybeRotate(now);
  const bool write_sinks = dirty_sinks && (pending_.empty() || retire_to > floor_ ||
                                           now - last_cursor_write_ >= kCursorWriteInterval);
  // A prefix of readings when pending_ holds more than max_commit_rows (issue 13: bounded
  // loop time per commit); the state and firing rows wait for the commit of the rest.
  size_t splittable = 0;
  size_t rows = commitRows(splittable);
  const std::uint64_t reserve = reservationFor(rows);  // journal_tail.cpp (enough for fewer)
  bool whole = true;
  // New series rows are within the budget too (issue 13), never after a row that refers to them.
  size_t series_to = persisted_series_;
  const Nanos start = steadyNow();
  const int rc = transaction([&] {
    int rc = retire_to > floor_ ? deleteThrough(retire_to) : SQLITE_OK;
    // Rows that cannot be split off (an alert or aggregate; past max_commit_rows): every new
    // series first, as far as the budget goes. Cut short, only the readings before the first
    // row that refers to a series left out go with them (none when no split is allowed).
    if (rc == SQLITE_OK && rows > splittable) {
      rc = insertNewSeries(series_to, start, true);
      if (series_to < series_.size()) rows = rowsWithSeriesBelow(splittable, series_to);
    }
    // Else each statement's new series just before it.
    if (rc == SQLITE_OK) rc = insertPending(rows, splittable, start, series_to);
    // Series that no row written refers to (yet), as far as the budget goes: at least some
    // when this commit writes nothing else.
    if (rc == SQLITE_OK) rc = insertNewSeries(series_to, start, rows == 0);
    whole = rows == pending_.size();
    for (auto it = pending_state_.begin(); whole && it != pending_state_.end() && rc == SQLITE_OK;
         ++it) {
      ResetGuard guard(write_state_);
      rc = write_state_.bindAll(std::string_view(it->first), Blob{it->second});
      if (rc == SQLITE_OK) rc = write_state_.step();
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK && new_marker && rows > 0) {
      ResetGuard guard(insert_marker_);
      rc = insert_marker_.bindAll(i64(last_seq_ + 1), commit_time);
      if (rc == SQLITE_OK) rc = insert_marker_.step();
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    if (rc == SQLITE_OK && write_sinks) rc = writeDirtySinks();
    if (rc == SQLITE_OK && dead_letters_.dirty()) rc = dead_letters_.write();
    if (rc == SQLITE_OK && reserve > 0) rc = writeReservation(reserve);
    if (rc == SQLITE_OK && whole) rc = writeFiringRows();  // journal_alerts.cpp
    return rc;
  });
  if (rc != SQLITE_OK) {
    ++failed_commits_;
    logLimited(commit_log_, "journal {}: commit of {} rows failed ({} in a row), kept pending: {}",
               path_, rows, failed_commits_, error_);
    return false;
  }
  if (failed_commits_ > 0) {
    log::notice("journal {}: commits work again after {} failures", path_, failed_commits_);
    failed_commits_ = 0;
  }
  last_seq_ += rows;
  if (rows > 0) segments_.back()->last = last_seq_;
  if (whole) {
    keepCommittedTail();  // pending_ empty after (the sinks' copy: journal_tail.cpp)
    for (auto& [k, v] : pending_state_) state_[k] = std::move(v);
    pending_state_.clear();
  } else {
    keepCommittedPrefix(rows);
  }
  persisted_series_ = series_to;
  updateEvictable();  // journal_series.cpp
  floor_ = retire_to;
  settleSegments();
  if (new_marker && rows > 0) {
    has_marker_ = true;
    last_marker_time_ = commit_time;
  }
  if (write_sinks || !dirty_sinks) {  // the file's cursors are the ones in memory
    for (auto& [name, st] : sinks_) st.dirty = false;
    last_cursor_write_ = now;
  }
  dead_letters_.committed();
  if (whole) firingCommitted();
  if (reserve > 0) reserved(reserve);
  ++commits_;
  afterCommit();  // synchronous = full: the WAL's fdatasync, off this thread (journal_sync.cpp)
  return true;
}

void SqliteJournal::read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                         Reader reader) {
  readRows(false, after, limit, out, reader);
}

void SqliteJournal::readAlerts(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out,
                               Reader reader) {
  readRows(true, after, limit, out, reader);
}

void SqliteJournal::readDevice(std::string_view device, std::uint64_t after, size_t limit,
                               std::uint64_t scan, std::vector<ReadingRecord>& out) {
  out.clear();
  series_.beginCall();
  std::string ids;
  if (limit == 0 || !deviceSeriesIds(device, ids) || ids.empty()) return;
  const std::uint64_t floor = std::max(after, last_seq_ > scan ? last_seq_ - scan : 0);
  // Newest first (a backwards rowid scan of each segment, newest segment first, that stops at
  // `limit`), turned around below.
  int rc = SQLITE_DONE;
  for (auto seg = segments_.rbegin(); seg != segments_.rend() && out.size() < limit; ++seg) {
    if ((*seg)->rows() == 0) continue;
    if ((*seg)->last <= floor) break;
    Stmt stmt;
    rc = stmt.prepare(db_.get(),
                      fmt::format("SELECT seq, s, t, v, d, c FROM r_{} WHERE k = 0 AND seq > ?1 "
                                  "AND seq <= ?2 AND s IN ({}) ORDER BY seq DESC LIMIT ?3",
                                  (*seg)->n, ids),
                      false);
    if (rc == SQLITE_OK)
      rc = stmt.bindAll(i64(floor), i64(last_seq_),
                        i64(std::min<std::uint64_t>(limit - out.size(), INT64_MAX)));
    if (rc != SQLITE_OK) break;
    while ((rc = stmt.step()) == SQLITE_ROW) {
      const std::int64_t sid = stmt.columnInt(1);
      const bool has_d = stmt.columnType(4) != SQLITE_NULL;
      const std::int64_t d = has_d ? stmt.columnInt(4) : 0;
      const double v = stmt.columnType(3) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                         : stmt.columnDouble(3);
      Nanos event = 0;
      double value = 0;
      std::uint8_t ref = 0;
      if (sid < 0 || static_cast<std::uint64_t>(sid) >= series_.size() ||
          !expandReading(stmt.columnInt(2), v, stmt.columnInt(5), has_d ? &d : nullptr, event,
                         value, ref))
        continue;  // read() logs such rows; a tail just leaves them out
      const auto seq = static_cast<std::uint64_t>(stmt.columnInt(0));
      const InternedSeries* series = resolveSeries(static_cast<SeriesId>(sid), seq);
      if (series == nullptr) continue;  // logged
      ReadingRecord& r = out.emplace_back();
      r.seq = seq;
      r.series = series;
      r.event_time = event;
      r.value = value;
      if (has_d) r.device_time = wrapSub(event, d);
      r.reference = static_cast<TimeReference>(ref);
      r.kind = RecordKind::kReading;
    }
    if (rc != SQLITE_DONE) break;
  }
  if (rc != SQLITE_DONE)
    logLimited(read_log_, "journal {}: reading the tail of {} failed: {}", path_, device,
               sqlite::describe(db_.get(), rc));
  std::reverse(out.begin(), out.end());
}

void SqliteJournal::readRows(bool alerts, std::uint64_t after, size_t limit,
                             std::vector<ReadingRecord>& out, Reader reader) {
  // Records are reused (their strings keep their capacity), so a sink's steady state reads
  // without allocating.
  size_t n = 0;
  read_failed_ = false;
  series_.beginCall(reader);  // what resolveSeries() hands out is held by `reader`
  if (limit > 0 && after < last_seq_) {
    const auto cap = static_cast<size_t>(std::min<std::uint64_t>(limit, last_seq_ - after));
    if (out.size() < cap && !alerts) out.reserve(cap);
    // Segments in seq order: each continues where the one before it ended.
    for (const auto& seg : segments_) {
      if (n >= limit || read_failed_) break;
      if (seg->rows() == 0 || seg->last <= after) continue;
      n = readSegment(alerts ? seg->read_alerts : seg->read, after, limit - n, out, n);
    }
  }
  out.resize(n);
}

size_t SqliteJournal::readSegment(Stmt& stmt, std::uint64_t after, size_t limit,
                                  std::vector<ReadingRecord>& out, size_t n) {
  {
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
        // Past the pinned ids, read back from SQLite if evicted: when that fails (logged), the
        // read stops here as after any read error, and the caller tries again later.
        const auto seq = static_cast<std::uint64_t>(stmt.columnInt(0));
        const InternedSeries* series = resolveSeries(static_cast<SeriesId>(sid), seq);
        if (series == nullptr) break;
        if (n == out.size()) out.emplace_back();
        ReadingRecord& r = out[n];
        r.seq = seq;
        r.series = series;
        r.event_time = stmt.columnInt(2);
        r.value = stmt.columnType(3) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                    : stmt.columnDouble(3);
        const std::int64_t k = stmt.columnInt(7);
        r.device_time.reset();
        r.reference = TimeReference::kReceive;
        if (k == kRowReading) {
          const std::int64_t c = stmt.columnInt(5);
          const bool has_d = stmt.columnType(4) != SQLITE_NULL;
          const std::int64_t d = has_d ? stmt.columnInt(4) : 0;
          std::uint8_t ref = 0;
          if (!expandReading(r.event_time, r.value, c, has_d ? &d : nullptr, r.event_time, r.value,
                             ref)) {
            logLimited(read_log_, "journal {}: row {} has time reference {}; skipped", path_, r.seq,
                       c);
            continue;
          }
          r.kind = RecordKind::kReading;
          r.reference = static_cast<TimeReference>(ref);
          if (has_d) r.device_time = wrapSub(r.event_time, d);
        } else if (k == kRowAggregate) {
          r.kind = RecordKind::kAggregate;
          r.window = WindowStats{};
          if (!expandAggregate(r.event_time, stmt.columnInt(4), stmt.columnInt(5), r.window.start,
                               r.window.size) ||
              !decodeWindow(stmt.columnBlob(6), r.window)) {
            logLimited(read_log_, "journal {}: aggregate row {} cannot be decoded; skipped", path_,
                       r.seq);
            continue;
          }
          r.event_time = r.window.start;
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
    if (rc != SQLITE_DONE) {
      read_failed_ = true;
      logLimited(read_log_, "journal {}: reading after seq {} failed after {} rows: {}", path_,
                 after, n, sqlite::describe(db_.get(), rc));
    }
  }
  return n;
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
  SinkState& st = it->second;
  if (seq > st.cursor) {
    st.cursor = seq;
    st.dirty = true;
  }
  // Even below a cursor that retention moved on: the batch the sink was sending is done.
  if (seq > st.confirmed) {
    st.confirmed = seq;
    updateEvictable();
  }
}

int SqliteJournal::deleteThrough(std::uint64_t upto) {
  int rc = clearSegmentsThrough(upto);
  if (rc == SQLITE_OK) rc = SQLITE_DONE;
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
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
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
    int rc = deleteThrough(upto);
    if (rc != SQLITE_OK) return rc;
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
  settleSegments();
  updateEvictable();
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

  // 1. Rows every configured sink has confirmed. While readings arrive, the next group commit
  //    deletes them in the same transaction as its rows: one fsync less each second. Cursors
  //    only move forward and the rows stay below them, so deferring loses nothing.
  if (!sinks_.empty()) {
    const std::uint64_t confirmed = confirmedSeq();
    // Whole segments only: a segment is emptied once all of its rows are confirmed. When no row
    // came since the last pass, the confirmed rows of the newest segment go row by row: idle,
    // the bytes do not matter, and a segment may wait long for its last rows (the windows'
    // cursor stays behind open windows until readings come again).
    const bool idle = pending_.empty() && last_seq_ == idle_check_seq_;
    idle_check_seq_ = last_seq_;
    const std::uint64_t whole = idle ? confirmed : segmentFloor(confirmed);
    if (!pending_.empty() && whole > floor_) {
      retire_upto_ = std::max(retire_upto_, whole);
    } else if (whole > floor_) {
      // One bounded step per pass (issue 13: this runs on the event loop); the rest waits for
      // the next pass or the next commit.
      const std::uint64_t before = floor_;
      ok = removeThrough(retentionStep(segments_, floor_, whole, idle), nullptr);
      removed += floor_ - before;
    }
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
      const std::uint64_t before = floor_;
      if (!removeThrough(capStep(used, target, step_rows), &tally) || !usedBytes(used)) break;
      removed += floor_ - before;
    }
    reportDrops(tally, fmt::format("over buffer.max_size ({} bytes in use, cap {})", used_before,
                                   options_.max_size_bytes));
  }

  // 4. Free space on the filesystem below buffer.min_free (journal_disk.cpp).
  if (ok) removed += keepFree(step_rows);

  maybeCheckpoint();
  return removed;
}

void SqliteJournal::startCheckpointer() {
  const int rc = checkpointer_.attach(path_, connectionPragmas(options_));
  if (rc != SQLITE_OK)
    log::error("journal {}: no checkpoint thread ({}); the event loop checkpoints the WAL", path_,
               sqlite3_errstr(rc));
}

void SqliteJournal::maybeCheckpoint() { checkpoint(db_.get(), nullptr, wal_frames_); }

void SqliteJournal::checkpoint(sqlite3* db, const char* name, int frames) {
  if (frames < checkpoint_frames_) return;
  if (checkpointer_.attached() && frames < kInlineCheckpointFactor * checkpoint_frames_) {
    checkpointer_.request();
    return;
  }
  int log_frames = 0, done = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done);
  if (rc != SQLITE_OK) {
    logLimited(retention_log_, "journal {}: WAL checkpoint failed: {}", path_,
               sqlite::describe(db, rc));
  } else if (done == log_frames) {
    wal_frames_ = 0;  // the next commit starts the WAL over
  }
}

int SqliteJournal::walHook(void* self, sqlite3* db, const char* name, int frames) {
  auto* j = static_cast<SqliteJournal*>(self);
  if (frames < j->wal_frames_) j->syncer_.charge(1);  // the -wal started over: its header synced
  j->wal_frames_ = frames;
  j->checkpoint(db, name, frames);
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
  s.restores = restores_;
  s.min_free = min_free_;
  s.disk_free = disk_free_;
  s.low_disk = low_disk_;
  for (const auto& [name, st] : sinks_) {
    SinkBacklog& b = s.sinks[name];
    b.cursor = st.cursor;
    b.dropped = st.dropped;
    b.backlog = last_seq_ - std::min(st.cursor, last_seq_);
    if (b.backlog > 0) b.oldest_unsent = commitTimeOf(std::max(st.cursor, floor_) + 1);
  }
  return s;
}

}  // namespace gw::buffer::detail
