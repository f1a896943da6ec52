// RAII for the sqlite3 C API, private to buffer/. Return codes are passed through unchanged
// (SQLITE_OK / SQLITE_ROW / SQLITE_DONE or an error) so every caller checks them.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace gw::buffer::sqlite {

struct DbCloser {
  // close_v2: never fails for a live handle; statements left open become zombies instead of
  // leaking the handle (ours are finalized first anyway).
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

/// A BLOB parameter. An empty blob binds as a zero-length BLOB, not NULL.
struct Blob {
  std::string_view bytes;
};

/// A prepared statement, finalized on destruction. Move-only.
class Stmt {
 public:
  Stmt() = default;
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(Stmt&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(stmt_);
      stmt_ = std::exchange(o.stmt_, nullptr);
    }
    return *this;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  /// `persistent` for statements kept for the journal's life (SQLITE_PREPARE_PERSISTENT).
  int prepare(sqlite3* db, std::string_view sql, bool persistent = true) {
    sqlite3_finalize(std::exchange(stmt_, nullptr));
    return sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              persistent ? SQLITE_PREPARE_PERSISTENT : 0, &stmt_, nullptr);
  }
  bool valid() const { return stmt_ != nullptr; }

  int bind(int i, std::int64_t v) { return sqlite3_bind_int64(stmt_, i, v); }
  int bind(int i, double v) { return sqlite3_bind_double(stmt_, i, v); }  // NaN binds NULL
  int bind(int i, std::nullptr_t) { return sqlite3_bind_null(stmt_, i); }
  int bind(int i, std::string_view v) {
    // A null data pointer would bind NULL, not an empty string.
    return sqlite3_bind_text(stmt_, i, v.data() ? v.data() : "", static_cast<int>(v.size()),
                             SQLITE_TRANSIENT);
  }
  int bind(int i, Blob v) {
    return sqlite3_bind_blob(stmt_, i, v.bytes.data() ? v.bytes.data() : "",
                             static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT);
  }
  /// Binds parameters 1..n in order; returns the first error.
  template <typename... A>
  int bindAll(const A&... args) {
    int rc = SQLITE_OK;
    int i = 0;
    ((rc = rc == SQLITE_OK ? bind(++i, args) : rc), ...);
    return rc;
  }

  int step() { return sqlite3_step(stmt_); }
  /// Returns the statement to its initial state. sqlite3_reset() repeats the error of the last
  /// step, which the caller has already checked, so its result carries no new information.
  void reset() { sqlite3_reset(stmt_); }

  int columnType(int i) const { return sqlite3_column_type(stmt_, i); }
  std::int64_t columnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
  double columnDouble(int i) const { return sqlite3_column_double(stmt_, i); }
  std::string_view columnText(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string_view();
  }
  std::string_view columnBlob(int i) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, i));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string_view();
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

/// Resets a statement when leaving a scope, whatever the path.
class ResetGuard {
 public:
  explicit ResetGuard(Stmt& s) : s_(s) {}
  ~ResetGuard() { s_.reset(); }
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;

 private:
  Stmt& s_;
};

/// Runs a statement that returns no row or whose rows are not needed; SQLITE_OK on success.
inline int run(Stmt& s) {
  ResetGuard g(s);
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/// The primary result code (extended codes are enabled on our connections).
inline int primary(int rc) { return rc & 0xff; }

/// "<errmsg> (<code name>)" for the last failed call on `db`.
inline std::string describe(sqlite3* db, int rc) {
  std::string s = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  s += " (";
  s += sqlite3_errstr(rc);
  s += ", code ";
  s += std::to_string(rc);
  s += ')';
  return s;
}

}  // namespace gw::buffer::sqlite
