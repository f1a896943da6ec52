// The WAL write VFS (buffer/wal_write_vfs.h): a commit's frames in one write, and nothing a
// COMMIT returned for missing from the file or hidden from another connection.
#include "buffer/wal_write_vfs.h"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
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
