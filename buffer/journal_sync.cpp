// The journal's durable seq: with synchronous = "full" the WAL is fdatasynced by WalSyncer
// (buffer/wal_syncer.h) after each commit instead of inside it, on the event loop.
#include <sqlite3.h>

#include <mutex>
#include <string>
#include <utility>

#include "buffer/sqlite_journal.h"

namespace gw::buffer {
namespace {

std::mutex test_hook_mu;
std::function<void()> test_hook;

}  // namespace

void setWalSyncHookForTests(std::function<void()> hook) {
  std::lock_guard lock(test_hook_mu);
  test_hook = std::move(hook);
}

namespace detail {

void SqliteJournal::startSyncer() {
  if (options_.synchronous != Synchronous::kFull) return;
  // Looked up at each sync (tests set it around an open journal); one uncontended lock per sync.
  syncer_.setBeforeSync([] {
    std::function<void()> hook;
    {
      std::lock_guard lock(test_hook_mu);
      hook = test_hook;
    }
    if (hook) hook();
  });
  syncer_.setInterval(options_.sync_interval);
  // The checkpoints' fsyncs count against the same rate (issue 16: fsyncs per second).
  checkpointer_.onSyncs([this](int n) { syncer_.charge(n); });
  std::string error;
  // Everything committed so far is in the file the connection has open (at open; after a
  // write-back, the synced copy): durable once attach() has synced the -wal.
  if (syncer_.attach(withSuffix(options_.path, "-wal").string(), last_seq_, error)) {
    wal_sync_ = true;
    return;
  }
  wal_sync_ = false;
  log::error(
      "journal {}: no WAL sync thread ({}); commits are synced inside the transaction, on the "
      "event loop",
      path_, error);
  const int rc = exec("PRAGMA synchronous=FULL");
  if (rc != SQLITE_OK)
    log::error("journal {}: PRAGMA synchronous=FULL failed: {}", path_,
               sqlite::describe(db_.get(), rc));
}

void SqliteJournal::afterCommit() {
  if (wal_sync_) syncer_.request(last_seq_);
}

std::uint64_t SqliteJournal::durableSeq() const {
  return wal_sync_ ? syncer_.durable() : last_seq_;
}

void SqliteJournal::onDurable(std::function<void(std::uint64_t)> fn) {
  syncer_.onDurable(std::move(fn));
}

std::uint64_t SqliteJournal::syncNow() { return wal_sync_ ? syncer_.syncNow() : last_seq_; }

}  // namespace detail
}  // namespace gw::buffer
