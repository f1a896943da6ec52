// The journal pulled away under the running daemon (issue 17): journal.db, its -wal or -shm
// deleted, moved or replaced. SQLite keeps writing to the files it has open, so commits go on
// "succeeding" and acknowledgements go out for rows that a restart would never see. Once a
// second the paths are compared (device, inode) with the files opened; when one differs, the
// open connection (which still sees every committed row) is copied back to the path with the
// backup API and the journal carries on with the copy.
//
// Why write back rather than stop and exit: an exit cannot forward what it holds while the
// sinks are down (the case where the journal matters), so the rows would die with the process.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <system_error>

#include "buffer/sqlite_journal.h"
#include "buffer/wal_write_vfs.h"

namespace gw::buffer::detail {
namespace {

constexpr const char* kSuffixes[3] = {"", "-wal", "-shm"};
constexpr const char* kNames[3] = {"journal file", "WAL file", "shared-memory file"};

bool guardOff() {
  const char* v = std::getenv("GW_TEST_NO_JOURNAL_GUARD");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

std::string stamp(Nanos t) {
  std::time_t secs = static_cast<std::time_t>(t / kNanosPerSecond);
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&secs, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm) == 0)
    return std::to_string(secs);
  return buf;
}

bool fsyncDir(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

SqliteJournal::LockFd::~LockFd() {
  if (fd >= 0) ::close(fd);
}

bool SqliteJournal::lock(std::string& error) {
  const fs::path p = withSuffix(options_.path, ".lock");
  lock_.fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock_.fd < 0) {
    error = fmt::format("cannot open {}: {}", p.string(), std::strerror(errno));
    return false;
  }
  if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
    error = errno == EWOULDBLOCK
                ? "in use by another process (a running gatewayd? stop it first: systemctl stop "
                  "iot-gateway)"
                : fmt::format("cannot lock {}: {}", p.string(), std::strerror(errno));
    return false;
  }
  return true;
}

void SqliteJournal::recordFiles() {
  for (int i = 0; i < 3; ++i) {
    struct stat st {};
    files_[i] = FileId{};
    if (::stat(withSuffix(options_.path, kSuffixes[i]).c_str(), &st) == 0)
      files_[i] = FileId{true, static_cast<std::uint64_t>(st.st_dev),
                         static_cast<std::uint64_t>(st.st_ino)};
  }
}

bool SqliteJournal::checkFile() {
  static const bool off = guardOff();
  if (off) return true;
  std::string why;
  for (int i = 0; i < 3 && why.empty(); ++i) {
    const fs::path p = withSuffix(options_.path, kSuffixes[i]);
    struct stat st {};
    const bool exists = ::stat(p.c_str(), &st) == 0;
    if (!files_[i].known) {
      // The -wal and -shm appear with the first transaction; the journal file is there from open.
      if (exists && i > 0 && !detached_)
        files_[i] = FileId{true, static_cast<std::uint64_t>(st.st_dev),
                           static_cast<std::uint64_t>(st.st_ino)};
      continue;
    }
    if (!exists) {
      why = fmt::format("its {} {} was deleted or moved ({})", kNames[i], p.string(),
                        std::strerror(errno));
    } else if (static_cast<std::uint64_t>(st.st_dev) != files_[i].dev ||
               static_cast<std::uint64_t>(st.st_ino) != files_[i].ino) {
      why = fmt::format("its {} {} was replaced by another file", kNames[i], p.string());
    }
  }
  if (why.empty() && !detached_) return true;
  if (why.empty()) why = "it was pulled away before";
  return restore(why);
}

// The new connection to the copy: the settings open() gives a journal.
int SqliteJournal::configure(sqlite3* db) {
  int rc = sqlite3_extended_result_codes(db, 1);
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, 200);
  const std::string pragmas = "PRAGMA journal_mode=WAL; " + connectionPragmas(options_);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK && options_.max_size_bytes > 0) {
    const std::uint64_t hard = options_.max_size_bytes / 4 * 5 + (1u << 20);
    const std::string sql =
        fmt::format("PRAGMA max_page_count={}", hard / static_cast<std::uint64_t>(page_size_) + 1);
    rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  return rc;
}

bool SqliteJournal::restore(const std::string& why) {
  if (!detached_)
    log::error(
        "journal {}: {} while gatewayd was running; writing the open journal ({} rows, seq up "
        "to {}) back to its path",
        path_, why, last_seq_ - floor_, last_seq_);
  detached_ = true;  // no commit (so no acknowledgement) until the copy is in place
  const fs::path dir = options_.path.parent_path();
  const fs::path tmp = withSuffix(options_.path, ".restoring");
  std::error_code ec;
  const auto fail = [&](const std::string& what) {
    logLimited(commit_log_,
               "journal {}: cannot write the journal back ({}); commits and acknowledgements "
               "are held, trying again in a second",
               path_, what);
    for (const char* s : {"", "-journal", "-wal", "-shm"}) fs::remove(withSuffix(tmp, s), ec);
    return false;
  };
  if (!dir.empty()) {
    fs::create_directories(dir, ec);
    if (ec) return fail(fmt::format("creating {}: {}", dir.string(), ec.message()));
  }
  for (const char* s : {"", "-journal", "-wal", "-shm"}) fs::remove(withSuffix(tmp, s), ec);

  // 1. The copy, made durable before anything at the path is touched.
  {
    sqlite3* raw = nullptr;
    int rc =
        sqlite3_open_v2(tmp.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    sqlite::Db copy(raw);
    if (rc != SQLITE_OK) return fail("opening " + tmp.string() + ": " + sqlite::describe(raw, rc));
    sqlite3_exec(copy.get(), "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    sqlite3_backup* b = sqlite3_backup_init(copy.get(), "main", db_.get(), "main");
    if (b == nullptr) return fail("backup: " + sqlite::describe(copy.get(), SQLITE_ERROR));
    rc = sqlite3_backup_step(b, -1);
    const int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || frc != SQLITE_OK)
      return fail("backup: " + sqlite::describe(copy.get(), rc != SQLITE_DONE ? rc : frc));
  }

  // 2. What is at the path now: our own files (deleted from under us later) go, their content
  //    is in the copy; anyone else's are kept for inspection.
  const std::string replaced = ".replaced-" + stamp(clock_());
  for (int i = 0; i < 3; ++i) {
    const fs::path p = withSuffix(options_.path, kSuffixes[i]);
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) continue;
    const bool ours = files_[i].known && static_cast<std::uint64_t>(st.st_dev) == files_[i].dev &&
                      static_cast<std::uint64_t>(st.st_ino) == files_[i].ino;
    if (ours) {
      fs::remove(p, ec);
      if (ec) return fail(fmt::format("removing {}: {}", p.string(), ec.message()));
    } else {
      const fs::path kept = withSuffix(withSuffix(options_.path, replaced), kSuffixes[i]);
      fs::rename(p, kept, ec);
      if (ec) return fail(fmt::format("moving {} aside: {}", p.string(), ec.message()));
      log::error("journal {}: the {} found in its place is not this journal's; kept as {}", path_,
                 kNames[i], kept.string());
    }
  }
  fs::rename(tmp, options_.path, ec);
  if (ec) return fail(fmt::format("renaming {}: {}", tmp.string(), ec.message()));
  if (!fsyncDir(dir))
    return fail(fmt::format("fsync of {}: {}", dir.string(), std::strerror(errno)));

  // 3. The connection moves to the copy. The old one closes without a checkpoint: its files are
  //    gone from the path and must not be touched by name.
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path_.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           walWriteVfs());  // as open(): a commit's WAL frames in one write
  sqlite::Db next(raw);
  if (rc == SQLITE_OK) rc = configure(next.get());
  if (rc != SQLITE_OK) return fail("opening the copy: " + sqlite::describe(next.get(), rc));
  closeWithoutCheckpoint();
  for (Stmt* s : {&begin_, &commit_, &rollback_, &insert_series_, &insert_marker_, &write_sink_,
                  &write_floor_, &delete_markers_, &marker_after_, &write_state_, &marker_at_,
                  &page_count_, &freelist_count_, &find_series_, &load_series_, &device_series_})
    *s = Stmt();
  for (auto* segs : {&segments_, &spare_segments_})
    for (auto& seg : *segs)
      for (Stmt* s : {&seg->insert, &seg->insert_many, &seg->read, &seg->read_alerts, &seg->clear,
                      &seg->clear_through})
        *s = Stmt();
  db_ = std::move(next);
  sqlite3_wal_hook(db_.get(), &SqliteJournal::walHook, this);
  wal_frames_ = 0;
  startCheckpointer();  // closeWithoutCheckpoint() above detached it from the old files
  rc = prepareStatements();
  for (auto* segs : {&segments_, &spare_segments_})
    for (auto& seg : *segs)
      if (rc == SQLITE_OK) rc = prepareSegment(*seg);
  if (rc != SQLITE_OK) {
    // The copy was written and read back by SQLite a moment ago: this is not expected. The rows
    // are safe in the file; a restart picks them up.
    log::error("journal {}: the written-back journal cannot be used: {}; exiting", path_,
               sqlite::describe(db_.get(), rc));
    std::abort();
  }
  recordFiles();
  // The WAL sync follows the connection to the copy's -wal; the copy itself is synced, so every
  // commit so far is durable (also those a sync of the old -wal had not covered yet).
  startSyncer();
  detached_ = false;
  ++restores_;
  log::error("journal {}: written back to its path ({} rows, seq up to {}); carrying on", path_,
             last_seq_ - floor_, last_seq_);
  return true;
}

}  // namespace gw::buffer::detail
