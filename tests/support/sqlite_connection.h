// A second connection to a journal file, as the sqlite3 CLI would open it: unit tests use it to
// hold a lock, read what is committed, or build a fixture file beside the Journal under test.
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace gw::test {

struct SqliteConnection {
  sqlite3* db = nullptr;
  /// busy_timeout_ms 0: a locked file fails at once (SQLITE_BUSY) instead of being waited for.
  /// vfs: a registered VFS's name (e.g. buffer::walWriteVfs()); nullptr = SQLite's default.
  explicit SqliteConnection(const std::filesystem::path& p, int busy_timeout_ms = 0,
                            const char* vfs = nullptr) {
    REQUIRE(sqlite3_open_v2(p.string().c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            vfs) == SQLITE_OK);
    if (busy_timeout_ms > 0) REQUIRE(sqlite3_busy_timeout(db, busy_timeout_ms) == SQLITE_OK);
  }
  ~SqliteConnection() { sqlite3_close(db); }
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  int exec(const std::string& sql) {
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  /// The first column of the first row, or -1 when there is none.
  std::int64_t queryInt(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
  }
};

}  // namespace gw::test
