// Opening the journal: integrity check (quick_check) before anything writes, the schema
// version check (a new file gets the schema, an older one is upgraded), WAL and pragmas, the
// state loaded back; a corrupt file is moved aside and a new journal started.
#include <fmt/core.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <system_error>

#include "buffer/sqlite_journal.h"
#include "buffer/wal_write_vfs.h"

namespace gw::buffer {
namespace detail {
namespace {

constexpr int kBusyTimeoutMs = 200;  // only another process (sqlite3 CLI) can hold the lock

}  // namespace

const char* synchronousPragma(Synchronous s) {
  switch (s) {
    case Synchronous::kOff:
      return "OFF";
    case Synchronous::kNormal:
      return "NORMAL";
    case Synchronous::kFull:
      // Not FULL: the journal's WalSyncer fdatasyncs the WAL after each commit, off the event
      // loop (journal_sync.cpp). NORMAL still syncs the WAL before a checkpoint copies it and
      // the database after, and the WAL header when the WAL starts over.
      return "NORMAL";
  }
  std::abort();  // not a Synchronous: a bug
}

std::int64_t walSizeLimit(const JournalOptions& o) {
  return std::max<std::int64_t>(kJournalSizeLimit,
                                static_cast<std::int64_t>(o.wal_checkpoint_bytes));
}

std::string connectionPragmas(const JournalOptions& o) {
  // secure_delete: Debian builds SQLite with it on, which overwrites every deleted row with
  // zeros, i.e. writes each row a second time (WAL and checkpoint) about a second after it was
  // inserted. Off, the deleted rows stay in free pages until they are reused; salvage
  // (salvage.cpp) skips rows at or below the floor recorded in table meta.
  // cache_size: 256 KiB instead of SQLite's 2 MiB (issue 16: RSS on a Pi; 1 MiB until issue
  // 13's 10,000-series aim: VmHWM 29.1 -> 27.3 MiB in scale_bench). The journal appends at the
  // right edge and sinks read what was just committed, so ~10 hot pages per commit and the
  // tail fit; the checkpointer's connection copies frames without its cache.
  return fmt::format(
      "PRAGMA synchronous={}; PRAGMA journal_size_limit={}; PRAGMA secure_delete=OFF; "
      "PRAGMA cache_size=-256;",
      synchronousPragma(o.synchronous), walSizeLimit(o));
}

namespace {

std::string utcStamp(Nanos t) {
  std::time_t secs = static_cast<std::time_t>(t / kNanosPerSecond - (t % kNanosPerSecond < 0));
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&secs, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm) == 0)
    return std::to_string(secs);
  return buf;
}

}  // namespace

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

std::string newerReason(std::int64_t version) {
  return fmt::format(
      "written by a newer iot-gateway: its schema version is {}, this gatewayd reads versions 1 "
      "to {}",
      version, kSchemaVersion);
}

JournalNewerError newerError(const std::string& path, const std::string& reason) {
  return JournalNewerError(fmt::format(
      "journal {} was {}. It is left as it is. Run the iot-gateway version that wrote it (its "
      "backlog is then forwarded), or move {} and its -wal aside to start an empty journal",
      path, reason, path));
}

// A newer schema seen in the file header alone (user_version at byte 60, application_id at 68,
// big-endian), when there is no -wal that could hold a later header: SQLite would create a -wal
// and -shm next to a file that must be left exactly as it is.
std::optional<std::int64_t> newerVersionInHeader(const fs::path& db) {
  std::error_code ec;
  if (fs::exists(withSuffix(db, "-wal"), ec) && fs::file_size(withSuffix(db, "-wal"), ec) > 0)
    return std::nullopt;
  std::ifstream in(db, std::ios::binary);
  unsigned char h[100];
  if (!in.read(reinterpret_cast<char*>(h), sizeof h)) return std::nullopt;
  if (std::memcmp(h, "SQLite format 3", 16) != 0) return std::nullopt;
  const auto be32 = [&](int at) {
    return static_cast<std::int64_t>((std::uint32_t{h[at]} << 24) |
                                     (std::uint32_t{h[at + 1]} << 16) |
                                     (std::uint32_t{h[at + 2]} << 8) | h[at + 3]);
  };
  const std::int64_t version = be32(60), app_id = be32(68);
  if (app_id == kApplicationId && version > kSchemaVersion) return version;
  return std::nullopt;
}

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
  // Through walWriteVfs(): a commit's WAL frames in one write (wal_write_vfs.h, issue 16).
  int rc = sqlite3_open_v2(path_.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           walWriteVfs());
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
    return {Outcome::kNewer, newerReason(version)};
  if (!fresh && !upgrade && (app_id != kApplicationId || version != kSchemaVersion))
    return {Outcome::kCorrupt,
            fmt::format("not an iot-gateway journal of schema version {} (application_id {:#x}, "
                        "user_version {})",
                        kSchemaVersion, app_id, version)};

  if (fresh) {  // before WAL mode and the first write: the page size is fixed from then on
    const std::string sql = fmt::format("PRAGMA page_size={}", options_.new_page_size);
    if ((rc = exec(sql.c_str())) != SQLITE_OK) return failed(rc, "page_size");
  }
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

  const std::string pragmas = connectionPragmas(options_);
  if ((rc = exec(pragmas.c_str())) != SQLITE_OK) return failed(rc, "pragmas");
  if ((rc = queryInt("PRAGMA page_size", page_size_)) != SQLITE_OK || page_size_ <= 0)
    return failed(rc, "page_size");
  checkpoint_frames_ = static_cast<int>(std::clamp<std::int64_t>(
      static_cast<std::int64_t>(options_.wal_checkpoint_bytes) / (page_size_ + kWalFrameHeader), 1,
      1 << 24));
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

OpenResult SqliteJournal::loadState() {
  int rc;
  {
    // The pinned series (ids below options_.pinned_series) into memory; the others stay in the
    // series table until a read or a name needs them (journal_series.cpp). Ids are dense.
    std::int64_t count = 0;
    {
      Stmt s;
      if ((rc = s.prepare(db_.get(), "SELECT count(*), coalesce(max(id), -1) FROM series",
                          false)) != SQLITE_OK ||
          (rc = s.step()) != SQLITE_ROW)
        return failed(rc, "loading series");
      count = s.columnInt(0);
      if (s.columnInt(1) != count - 1)
        return {Outcome::kCorrupt,
                fmt::format("series table: {} rows, highest id {}", count, s.columnInt(1))};
    }
    const auto pinned = static_cast<std::int64_t>(
        std::min<std::size_t>(options_.pinned_series, std::numeric_limits<std::int64_t>::max()));
    Stmt s;
    if ((rc = s.prepare(db_.get(),
                        "SELECT id, device, metric, tags FROM series WHERE id < ? ORDER BY id",
                        false)) != SQLITE_OK ||
        (rc = s.bind(1, pinned)) != SQLITE_OK)
      return failed(rc, "loading series");
    while ((rc = s.step()) == SQLITE_ROW) {
      Series series;
      if (s.columnInt(0) != static_cast<std::int64_t>(series_.size()) ||
          !readSeriesColumns(s, 1, series))
        return {Outcome::kCorrupt, fmt::format("series table: bad row id {}", s.columnInt(0))};
      series_.add(std::move(series));
    }
    if (rc != SQLITE_DONE) return failed(rc, "loading series");
    if (static_cast<std::size_t>(count) > series_.size()) {
      series_.skipTo(static_cast<std::size_t>(count));
      // The names past the pinned ids into the table's filter (not the names themselves), so
      // that a new name costs no SQLite lookup.
      Stmt names;
      if ((rc = names.prepare(db_.get(), "SELECT device, metric, tags FROM series WHERE id >= ?",
                              false)) != SQLITE_OK ||
          (rc = names.bind(1, pinned)) != SQLITE_OK)
        return failed(rc, "loading series");
      Series series;
      while ((rc = names.step()) == SQLITE_ROW) {
        if (!readSeriesColumns(names, 0, series))
          return {Outcome::kCorrupt, "series table: a row's tags cannot be decoded"};
        series_.noteName(series);
      }
      if (rc != SQLITE_DONE) return failed(rc, "loading series");
    }
    persisted_series_ = series_.size();
  }

  std::int64_t stored_floor = 0;
  if ((rc = queryInt("SELECT v FROM meta WHERE k = 'floor'", stored_floor)) != SQLITE_OK)
    return failed(rc, "loading the floor");
  if (stored_floor < 0) return {Outcome::kCorrupt, fmt::format("floor {}", stored_floor)};
  if (OpenResult r = loadSegments(static_cast<std::uint64_t>(stored_floor));
      r.outcome != Outcome::kOk)
    return r;
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
  if (OpenResult r = loadReservation(stored); r.outcome != Outcome::kOk) return r;
  if ((rc = registerSinks(std::move(stored))) != SQLITE_OK) return failed(rc, "saving sinks");
  updateEvictable();

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
  for (auto& [name, st] : sinks_) st.confirmed = st.cursor;  // nothing is in flight yet
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

}  // namespace detail

using detail::moveAside;
using detail::OpenResult;
using detail::Outcome;
using detail::SqliteJournal;
namespace fs = std::filesystem;

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
  if (const auto newer = detail::newerVersionInHeader(options.path))
    throw detail::newerError(path, detail::newerReason(*newer));
  auto journal = std::make_unique<SqliteJournal>(options);
  if (std::string error; !journal->lock(error))
    throw JournalError(fmt::format("journal {}: {}", path, error));
  OpenResult r = journal->open();
  if (r.outcome == Outcome::kFatal)
    throw JournalError(fmt::format("journal {}: {}", path, r.reason));
  if (r.outcome == Outcome::kNewer) {
    // Not one byte changed: no checkpoint of its -wal into it on close, nothing moved.
    journal->closeWithoutCheckpoint();
    throw detail::newerError(path, r.reason);
  }
  if (r.outcome == Outcome::kCorrupt) {
    journal->closeWithoutCheckpoint();
    journal.reset();
    const fs::path moved = moveAside(options.path, options.clock ? options.clock() : wallNow());
    log::error("journal {} is unusable ({}); moved it aside to {} and started a new journal", path,
               r.reason, moved.string());
    journal = std::make_unique<SqliteJournal>(options);
    if (std::string error; !journal->lock(error))
      throw JournalError(fmt::format("journal {}: {}", path, error));
    r = journal->open();
    if (r.outcome != Outcome::kOk)
      throw JournalError(fmt::format("journal {}: cannot start a new journal: {}", path, r.reason));
    journal->setMovedAside(moved);
  }
  journal->recordFiles();
  journal->startCheckpointer();
  journal->startSyncer();
  return journal;
}

}  // namespace gw::buffer
