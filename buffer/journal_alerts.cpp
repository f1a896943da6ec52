// The firing alerts as rows of table alert_firing (issue 13): a change of the set is one row,
// written in the transaction of the outbox event that made it; the set is read back at start-up
// one row at a time.
#include <string>
#include <vector>

#include "buffer/sqlite_journal.h"

namespace gw::buffer::detail {

void SqliteJournal::putFiring(std::string_view key, std::string_view json) {
  auto it = pending_firing_.find(key);
  if (it == pending_firing_.end())
    pending_firing_.emplace(std::string(key), std::string(json));
  else
    it->second.emplace(json);
}

void SqliteJournal::removeFiring(std::string_view key) {
  auto it = pending_firing_.find(key);
  if (it == pending_firing_.end())
    pending_firing_.emplace(std::string(key), std::nullopt);
  else
    it->second.reset();
}

int SqliteJournal::writeFiringRows() {
  int rc = SQLITE_OK;
  for (auto it = pending_firing_.begin(); it != pending_firing_.end() && rc == SQLITE_OK; ++it) {
    Stmt& st = it->second ? put_firing_ : delete_firing_;
    ResetGuard guard(st);
    rc = it->second ? st.bindAll(std::string_view(it->first), Blob{*it->second})
                    : st.bindAll(std::string_view(it->first));
    if (rc == SQLITE_OK) rc = st.step();
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  return rc;
}

bool SqliteJournal::forEachFiring(
    const std::function<void(std::string_view key, std::string_view json)>& visit) {
  // The pending puts as they are now: what `visit` puts is not visited.
  std::vector<std::pair<std::string, std::string>> puts;
  for (const auto& [k, v] : pending_firing_)
    if (v) puts.emplace_back(k, *v);
  Stmt s;
  int rc = s.prepare(db_.get(), "SELECT k, x FROM alert_firing", false);
  if (rc == SQLITE_OK) {
    while ((rc = s.step()) == SQLITE_ROW) {
      const std::string_view key = s.columnText(0);
      if (pending_firing_.find(key) != pending_firing_.end()) continue;  // changed since
      visit(key, s.columnBlob(1));
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) {
    log::error("journal {}: reading the firing alerts failed: {}", path_,
               sqlite::describe(db_.get(), rc));
    return false;
  }
  for (const auto& [k, v] : puts) {
    const auto it = pending_firing_.find(k);
    if (it != pending_firing_.end() && it->second) visit(k, *it->second);
  }
  return true;
}

int SqliteJournal::convertFiringState() {
  Stmt read, insert;
  int rc = read.prepare(db_.get(), "SELECT v FROM state WHERE k = 'alerts.firing'", false);
  if (rc != SQLITE_OK) return rc;
  rc = read.step();
  if (rc == SQLITE_DONE) return SQLITE_OK;  // nothing was firing
  if (rc != SQLITE_ROW) return rc;
  // The key is the event's dedup_key; a line that is not JSON keeps a key of its own, so that
  // the start-up restore reports it and drops it as before.
  rc = insert.prepare(db_.get(),
                      "INSERT OR REPLACE INTO alert_firing(k, x) VALUES(coalesce(CASE WHEN "
                      "json_valid(?1) THEN json_extract(?1, '$.dedup_key') END, ?2), ?1)",
                      false);
  if (rc != SQLITE_OK) return rc;
  const std::string_view all = read.columnBlob(0);
  std::size_t lines = 0;
  for (std::size_t pos = 0; pos < all.size() && rc == SQLITE_OK;) {
    std::size_t end = all.find('\n', pos);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view line = all.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    ++lines;
    ResetGuard guard(insert);
    rc = insert.bindAll(line, std::string_view(fmt::format("unreadable-{}", lines)));
    if (rc == SQLITE_OK) rc = insert.step();
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) return rc;
  read = Stmt();  // done with the value before it is deleted
  rc = exec("DELETE FROM state WHERE k = 'alerts.firing'");
  if (rc == SQLITE_OK)
    log::notice("journal {}: {} firing alert(s) moved from state 'alerts.firing' into rows", path_,
                lines);
  return rc;
}

}  // namespace gw::buffer::detail
