// The WAL write VFS (buffer/wal_write_vfs.h): a commit's frames in one write, and nothing a
// COMMIT returned for missing from the file or hidden from another connection.
#include "buffer/wal_write_vfs.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/sqlite_connection.h"
#include "tests/support/temp_dir.h"

using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kFrame = 4096 + 24;

/// A connection through the VFS, WAL mode, synchronous NORMAL (as the journal's).
struct Writer {
  sqlite3* db = nullptr;
  explicit Writer(const fs::path& p) {
    REQUIRE(walWriteVfs() != nullptr);
    REQUIRE(sqlite3_open_v2(p.string().c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            walWriteVfs()) == SQLITE_OK);
    REQUIRE(exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA page_size=4096;") ==
            SQLITE_OK);
  }
  ~Writer() { sqlite3_close(db); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  int exec(const std::string& sql) {
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  /// Inserts `rows` rows of `bytes` bytes each (one statement, in the current transaction).
  int insert(int rows, int bytes) {
    return exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
                std::to_string(rows) + ") INSERT INTO t(v) SELECT randomblob(" +
                std::to_string(bytes) + ") FROM n");
  }
};

std::string integrity(sqlite3* db) {
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, nullptr) == SQLITE_OK);
  std::string r = sqlite3_step(q) == SQLITE_ROW
                      ? reinterpret_cast<const char*>(sqlite3_column_text(q, 0))
                      : "no row";
  sqlite3_finalize(q);
  return r;
}

std::uint64_t walSize(const fs::path& db) {
  std::error_code ec;
  const auto s = fs::file_size(fs::path(db.string() + "-wal"), ec);
  return ec ? 0 : s;
}

}  // namespace

TEST_CASE("a commit's WAL frames are written with one write, all of them before COMMIT returns") {
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  Writer w(db);
  REQUIRE(w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)") == SQLITE_OK);
  gw::test::SqliteConnection reader(db);  // the default VFS, as the checkpointer's connection
  REQUIRE(reader.queryInt("SELECT count(*) FROM t") == 0);

  const WalWriteCounts c0 = walWriteCounts();
  const std::uint64_t wal0 = walSize(db);
  constexpr int kCommits = 20;
  for (int c = 1; c <= kCommits; ++c) {
    REQUIRE(w.exec("BEGIN") == SQLITE_OK);
    REQUIRE(w.insert(200, 100) == SQLITE_OK);  // ~6 pages and the interior pages above them
    REQUIRE(w.exec("COMMIT") == SQLITE_OK);
    // Every frame is in the file (whole frames, nothing held back) and readable elsewhere.
    CHECK((walSize(db) - 32) % kFrame == 0);
    CHECK(reader.queryInt("SELECT count(*) FROM t") == 200 * c);
  }
  const WalWriteCounts c1 = walWriteCounts();
  const std::uint64_t frames = (walSize(db) - wal0) / kFrame;
  INFO("frames " << frames << ", writes asked " << c1.requested - c0.requested << ", made "
                 << c1.written - c0.written);
  CHECK(frames >= 6 * kCommits);
  CHECK(c1.requested - c0.requested == 2 * frames);  // SQLite: a header and a page per frame
  CHECK(c1.written - c0.written == kCommits);        // here: one per commit
  CHECK(integrity(reader.db) == "ok");
}

TEST_CASE("a transaction larger than the page cache or the write run stays whole and private") {
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  Writer w(db);
  REQUIRE(w.exec("PRAGMA cache_size=8; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)") ==
          SQLITE_OK);
  gw::test::SqliteConnection reader(db);

  // 2 MB in one transaction: SQLite spills frames to the WAL before COMMIT and reads its own
  // spilled pages back (the VFS writes what it holds first); runs of at most 128 KiB.
  REQUIRE(w.exec("BEGIN") == SQLITE_OK);
  REQUIRE(w.insert(5000, 400) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(w.db, "SELECT count(*), sum(length(v)) FROM t", -1, &s, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(s, 0) == 5000);
  CHECK(sqlite3_column_int64(s, 1) == 5000 * 400);
  sqlite3_finalize(s);
  CHECK(reader.queryInt("SELECT count(*) FROM t") == 0);  // not committed: not visible
  REQUIRE(w.exec("COMMIT") == SQLITE_OK);
  CHECK(reader.queryInt("SELECT count(*) FROM t") == 5000);

  // Rolled back after a spill: the other connection never sees it; the file stays sound.
  REQUIRE(w.exec("BEGIN") == SQLITE_OK);
  REQUIRE(w.insert(5000, 400) == SQLITE_OK);
  REQUIRE(w.exec("ROLLBACK") == SQLITE_OK);
  CHECK(reader.queryInt("SELECT count(*) FROM t") == 5000);
  REQUIRE(w.exec("BEGIN; DELETE FROM t WHERE id % 2 = 0; COMMIT") == SQLITE_OK);
  CHECK(reader.queryInt("SELECT count(*) FROM t") == 2500);

  // A checkpoint through the other connection copies exactly what was committed.
  REQUIRE(reader.exec("PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
  CHECK(walSize(db) == 0);
  REQUIRE(w.exec("BEGIN") == SQLITE_OK);  // the WAL starts over: its header goes through at once
  REQUIRE(w.insert(10, 10) == SQLITE_OK);
  REQUIRE(w.exec("COMMIT") == SQLITE_OK);
  CHECK(reader.queryInt("SELECT count(*) FROM t") == 2510);
  CHECK(integrity(reader.db) == "ok");
}

namespace {

/// The process's read or write system calls so far (/proc/self/io: syscr, syscw).
std::uint64_t ioCalls(const std::string& key) {
  std::ifstream in("/proc/self/io");
  std::string k;
  std::uint64_t v = 0;
  while (in >> k >> v)
    if (k == key + ":") return v;
  FAIL("no " << key << " in /proc/self/io");
  return 0;
}

/// `commits` commits of 100 rows of 30 bytes (~2 pages each) into table t of a new 2 KiB-page
/// database in WAL mode, without a checkpoint.
void fill(const fs::path& db, int commits) {
  gw::test::SqliteConnection c(db, 0, walWriteVfs());
  REQUIRE(c.exec("PRAGMA page_size=2048; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; "
                 "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)") == SQLITE_OK);
  for (int i = 0; i < commits; ++i)
    REQUIRE(c.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) "
                   "INSERT INTO t(v) SELECT randomblob(30) FROM n") == SQLITE_OK);
  sqlite3_db_config(c.db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
}

/// A connection through the VFS with a small page cache (so that reads reach the files), no
/// automatic checkpoint and none at close.
struct VfsConnection : gw::test::SqliteConnection {
  explicit VfsConnection(const fs::path& db) : SqliteConnection(db, 0, walWriteVfs()) {
    REQUIRE(exec("PRAGMA cache_size=8; PRAGMA wal_autocheckpoint=0") == SQLITE_OK);
    sqlite3_db_config(this->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  }
};

}  // namespace

TEST_CASE("emptying a table whose pages are in the WAL reads them with few reads") {
  // What retention does to a segment table (journal_segments.cpp): DELETE without WHERE frees
  // every page of the table, and SQLite reads each one to find them.
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  fill(db, 300);  // ~600 leaf pages, all in the WAL
  VfsConnection c(db);
  const std::int64_t pages = c.queryInt("PRAGMA page_count");
  REQUIRE(pages > 500);
  const WalWriteCounts c0 = walWriteCounts();
  const std::uint64_t r0 = ioCalls("syscr");
  REQUIRE(c.exec("DELETE FROM t") == SQLITE_OK);
  const std::uint64_t reads = ioCalls("syscr") - r0;
  const WalWriteCounts c1 = walWriteCounts();
  INFO("pages " << pages << ", read calls " << reads << ", WAL reads asked "
                << c1.reads_requested - c0.reads_requested << ", made "
                << c1.reads_made - c0.reads_made);
  CHECK(c1.reads_requested - c0.reads_requested >= static_cast<std::uint64_t>(pages) * 9 / 10);
  CHECK(reads < static_cast<std::uint64_t>(pages) / 8);  // was one pread64 per page
  CHECK(c.queryInt("SELECT count(*) FROM t") == 0);
  CHECK(integrity(c.db) == "ok");
}

TEST_CASE("a checkpoint through the VFS reads the WAL and writes the database in large runs") {
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  fill(db, 300);
  gw::test::SqliteConnection check(db);
  const std::int64_t sum = check.queryInt("SELECT sum(length(v)) + sum(id) FROM t");
  VfsConnection c(db);
  const std::int64_t pages = c.queryInt("PRAGMA page_count");
  const WalWriteCounts c0 = walWriteCounts();
  const std::uint64_t r0 = ioCalls("syscr"), w0 = ioCalls("syscw");
  int log = 0, done = 0;
  REQUIRE(sqlite3_wal_checkpoint_v2(c.db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
          SQLITE_OK);
  const std::uint64_t reads = ioCalls("syscr") - r0, writes = ioCalls("syscw") - w0;
  const WalWriteCounts c1 = walWriteCounts();
  INFO("pages " << pages << ", frames " << log << ", read calls " << reads << ", write calls "
                << writes << ", db writes asked " << c1.db_writes_requested - c0.db_writes_requested
                << ", made " << c1.db_writes_made - c0.db_writes_made);
  REQUIRE(done == log);
  CHECK(c1.db_writes_requested - c0.db_writes_requested >= static_cast<std::uint64_t>(pages) - 2);
  CHECK(writes < static_cast<std::uint64_t>(pages) / 8);  // was one pwrite64 per page
  CHECK(reads < static_cast<std::uint64_t>(pages) / 8);   // was one pread64 per page
  sqlite3_close(c.db);                                    // before its WAL is moved away
  c.db = nullptr;
  // What the database file holds alone (the WAL moved away) is what was committed.
  fs::rename(fs::path(db.string() + "-wal"), dir.path / "moved-wal");
  fs::remove(fs::path(db.string() + "-shm"));
  gw::test::SqliteConnection after(db);
  CHECK(after.queryInt("SELECT sum(length(v)) + sum(id) FROM t") == sum);
  CHECK(integrity(after.db) == "ok");
}

TEST_CASE("what was read ahead is never served after the WAL changed") {
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  fill(db, 100);
  VfsConnection c(db);
  gw::test::SqliteConnection other(db);  // the default VFS: as another process (sqlite3 CLI)
  for (int round = 0; round < 4; ++round) {
    // A full scan reads the pages ahead; then the other connection empties the WAL into the
    // file, starts it over and writes other rows at the same offsets.
    const std::int64_t expect = other.queryInt("SELECT sum(id) + count(*) FROM t");
    CHECK(c.queryInt("SELECT sum(id) + count(*) FROM t") == expect);
    REQUIRE(other.exec("PRAGMA wal_checkpoint(RESTART)") == SQLITE_OK);
    REQUIRE(other.exec("BEGIN; DELETE FROM t WHERE id % 3 = " + std::to_string(round % 3) +
                       "; INSERT INTO t(v) SELECT randomblob(30) FROM t LIMIT 500; COMMIT") ==
            SQLITE_OK);
    CHECK(c.queryInt("SELECT sum(id) + count(*) FROM t") ==
          other.queryInt("SELECT sum(id) + count(*) FROM t"));
    // And this connection's own writes over what it read ahead.
    REQUIRE(c.exec("PRAGMA wal_checkpoint(RESTART)") == SQLITE_OK);
    REQUIRE(c.exec("UPDATE t SET v = randomblob(31) WHERE id % 2 = 0") == SQLITE_OK);
    CHECK(c.queryInt("SELECT sum(length(v)) FROM t") ==
          other.queryInt("SELECT sum(length(v)) FROM t"));
  }
  CHECK(integrity(c.db) == "ok");
}

TEST_CASE("reading a table in order from the database file reads it with few reads") {
  // A sink reading a segment whose pages were checkpointed into the file.
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  fill(db, 300);
  {
    gw::test::SqliteConnection ckpt(db);
    REQUIRE(ckpt.exec("PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
  }
  REQUIRE(walSize(db) == 0);
  VfsConnection c(db);
  const std::int64_t pages = c.queryInt("PRAGMA page_count");
  const WalWriteCounts c0 = walWriteCounts();
  const std::uint64_t r0 = ioCalls("syscr");
  CHECK(c.queryInt("SELECT count(*) FROM t WHERE length(v) = 30") == 30000);
  const std::uint64_t reads = ioCalls("syscr") - r0;
  const WalWriteCounts c1 = walWriteCounts();
  INFO("pages " << pages << ", read calls " << reads << ", db reads asked "
                << c1.db_reads_requested - c0.db_reads_requested << ", made "
                << c1.db_reads_made - c0.db_reads_made);
  CHECK(c1.db_reads_requested - c0.db_reads_requested >= static_cast<std::uint64_t>(pages) / 2);
  CHECK(reads < static_cast<std::uint64_t>(pages) / 8);  // was one pread64 per page
}

TEST_CASE("reading the WAL backwards reads it with few reads too") {
  // Rows in order can be frames in descending order: pages taken from the free list come in
  // descending page order, and a commit's frames are in page order. A scan in reverse row
  // order of a table written in ascending order reads the same way.
  gw::test::TempDir dir("gw-wal-vfs");
  const fs::path db = dir.path / "t.db";
  fill(db, 300);
  VfsConnection c(db);
  const std::int64_t pages = c.queryInt("PRAGMA page_count");
  const std::uint64_t r0 = ioCalls("syscr");
  CHECK(c.queryInt("SELECT sum(n) FROM (SELECT length(v) AS n FROM t ORDER BY id DESC)") ==
        30000 * 30);
  const std::uint64_t reads = ioCalls("syscr") - r0;
  INFO("pages " << pages << ", read calls " << reads);
  CHECK(reads < static_cast<std::uint64_t>(pages) / 8);  // one pread64 per page forward-only
}
