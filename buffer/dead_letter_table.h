// The journal's table of dead letters (buffer/dead_letters.h), private to buffer/. Letters wait
// in memory and are written by the journal's next commit, in its transaction: a burst of bad
// input costs no transaction (no fsync) of its own.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <deque>
#include <vector>

#include "buffer/dead_letters.h"
#include "buffer/sqlite.h"

namespace gw::buffer::detail {

class DeadLetterTable {
 public:
  /// Prepares the statements on `db` (again after the journal moved to another connection).
  int prepare(sqlite3* db);
  /// Keeps `letter` for the next write(); at most kDeadLetterMaxRows wait (the oldest go).
  void add(DeadLetter letter);
  bool dirty() const { return !pending_.empty(); }
  /// Inside the journal's transaction: inserts the waiting letters and deletes the oldest past
  /// the caps. Nothing changes in memory until committed().
  int write();
  /// The transaction that ran write() committed.
  void committed() { pending_.clear(); }
  /// The newest `limit` letters, waiting ones included, newest first.
  int read(std::size_t limit, std::vector<DeadLetter>& out);

 private:
  std::deque<DeadLetter> pending_;
  sqlite::Stmt insert_, prune_, read_;
};

}  // namespace gw::buffer::detail
