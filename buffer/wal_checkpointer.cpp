// See wal_checkpointer.h.
#include "buffer/wal_checkpointer.h"

#include <fmt/core.h>

#include "buffer/wal_write_vfs.h"
#include "core/worker_thread.h"

namespace gw::buffer::detail {

WalCheckpointer::WalCheckpointer()
    : thread_([this] {
        becomeWorkerThread("gw-checkpoint");  // never preempts the loop (core/worker_thread.h)
        run();
      }) {}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(request_mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  detach();
}

int WalCheckpointer::attach(const std::string& path, const std::string& pragmas) {
  sqlite3* raw = nullptr;
  // No SQLITE_OPEN_CREATE: the journal's connection has just opened this file. Through
  // walWriteVfs(): the WAL read in larger reads and consecutive pages written to the database
  // file with one write (wal_write_vfs.h).
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           walWriteVfs());
  sqlite::Db db(raw);
  if (rc == SQLITE_OK) rc = sqlite3_extended_result_codes(raw, 1);
  // The journal's connection stays the one that checkpoints (or not) when it closes.
  if (rc == SQLITE_OK) rc = sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  // synchronous decides whether the checkpoint fsyncs the database file, as on the journal's.
  if (rc == SQLITE_OK) rc = sqlite3_exec(raw, pragmas.c_str(), nullptr, nullptr, nullptr);
  std::lock_guard lock(db_mu_);
  if (rc != SQLITE_OK) {
    db_.reset();
    attached_ = false;
    return rc;
  }
  db_ = std::move(db);
  path_ = path;
  attached_ = true;
  return SQLITE_OK;
}

void WalCheckpointer::detach() {
  std::lock_guard lock(db_mu_);
  db_.reset();
  attached_ = false;
}

void WalCheckpointer::onSyncs(std::function<void(int)> fn) {
  std::lock_guard lock(db_mu_);
  on_syncs_ = std::move(fn);
}

void WalCheckpointer::request() {
  {
    std::lock_guard lock(request_mu_);
    if (requested_) return;
    requested_ = true;
  }
  cv_.notify_one();
}

void WalCheckpointer::run() {
  Nanos last = 0;
  int last_done = 0;  // frames the previous run had copied (the -wal's nBackfill)
  std::unique_lock lock(request_mu_);
  for (;;) {
    cv_.wait(lock, [this] { return requested_ || stop_; });
    if (stop_) return;
    // Spacing: wait out the rest of kMinSpacing since the last run (stop ends the wait).
    const Nanos since = monoNow() - last;
    if (last != 0 && since < kMinSpacing &&
        cv_.wait_for(lock, std::chrono::nanoseconds(kMinSpacing - since), [this] { return stop_; }))
      return;
    requested_ = false;
    lock.unlock();
    {
      std::lock_guard db_lock(db_mu_);
      if (db_) {
        int log_frames = 0, done = 0;
        const int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                                 &log_frames, &done);
        runs_.fetch_add(1, std::memory_order_relaxed);
        // SQLite syncs the -wal before it copies frames and journal.db after (synchronous =
        // NORMAL); a run that found nothing new to copy syncs neither.
        if (rc == SQLITE_OK && done > 0 && done != last_done && on_syncs_) on_syncs_(2);
        if (rc == SQLITE_OK) last_done = done;
        if (rc != SQLITE_OK) {
          failures_.fetch_add(1, std::memory_order_relaxed);
          std::uint64_t suppressed = 0;
          if (log_.allow(monoNow(), suppressed))
            log::write(log::Level::kError,
                       fmt::format(
                           "journal {}: WAL checkpoint failed: {}{}", path_,
                           sqlite::describe(db_.get(), rc),
                           suppressed ? fmt::format(" ({} similar messages not logged)", suppressed)
                                      : std::string()));
        }
      }
    }
    last = monoNow();
    lock.lock();
  }
}

}  // namespace gw::buffer::detail
