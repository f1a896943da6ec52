// The group commit's fdatasync off the event loop (issue 13's loop stall, issue 16). With
// buffer.synchronous = "full" the journal's connections run SQLite's `synchronous=NORMAL`: a
// COMMIT writes its WAL frames and returns without syncing (checkpoints still sync the WAL before
// they copy it into the database, and the database after). This thread then fdatasyncs the WAL
// file through a descriptor of its own (on Linux fdatasync flushes the inode, whichever
// descriptor) and reports the highest seq that sync covered: only then are readings acknowledged
// and forwarded. At most one sync runs; commits made meanwhile are covered by the next one, so
// the event loop never waits for the disk. Private to buffer/.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "core/time.h"

namespace gw::buffer::detail {

class WalSyncer {
 public:
  using Durable = std::function<void(std::uint64_t seq)>;

  WalSyncer();
  /// Syncs what was requested and not yet synced (shutdown: the last commit is made durable
  /// before the process goes), then stops the thread and closes the descriptor.
  ~WalSyncer();
  WalSyncer(const WalSyncer&) = delete;
  WalSyncer& operator=(const WalSyncer&) = delete;

  /// Opens the WAL file `wal_path` (the one the journal's connection has just opened; created
  /// empty when SQLite has not created it yet) and fdatasyncs it at once, so everything
  /// committed so far (`durable_seq`) is on stable storage. Replaces an earlier file (the
  /// journal written back to its path: the copy is synced, so `durable_seq` is its last seq);
  /// waits for a running sync first. Returns false with `error` when the file cannot be opened
  /// or synced (the journal then syncs inside COMMIT, as SQLite's synchronous=FULL).
  bool attach(const std::string& wal_path, std::uint64_t durable_seq, std::string& error);
  /// Closes the descriptor (waits for a running sync); requests are then ignored.
  void detach();
  bool attached() const { return attached_.load(std::memory_order_acquire); }

  /// A commit through `seq` has returned: asks for a sync covering it, returns at once. Also a
  /// commit that added no seq (cursor moves, state) asks for one, so that it is not left to a
  /// checkpoint.
  void request(std::uint64_t seq);
  /// Blocks until everything requested is synced; returns durable().
  std::uint64_t syncNow();
  /// The highest seq a finished sync covered.
  std::uint64_t durable() const { return durable_.load(std::memory_order_acquire); }

  /// Syncs start at most one per `interval` on average (0, the default: no spacing; one early
  /// sync is tolerated, so a commit that came late does not wait), counting the syncs
  /// charge()d by others: the disk sees at most one fsync per interval on average (issue 16:
  /// fsyncs per second at most 1 / buffer.commit_interval, the checkpoints' included). Commits
  /// made while a sync waits are covered by it; syncNow() does not wait.
  void setInterval(Nanos interval);
  /// `n` fsyncs made elsewhere on the journal's files (a checkpoint's, the WAL header's when it
  /// starts over): the next syncs wait n intervals longer in all, at most kMaxChargeDelay.
  void charge(int n);
  static constexpr Nanos kMaxChargeDelay = 250 * kNanosPerMilli;

  /// Called on the sync thread after each sync that moved durable() on, with the new value.
  void onDurable(Durable fn);
  /// Called on the sync thread before each fdatasync (tests hold a sync back with it).
  void setBeforeSync(std::function<void()> fn);

  std::uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  /// The slowest fdatasync so far, in nanoseconds.
  Nanos slowest() const { return slowest_.load(std::memory_order_relaxed); }

 private:
  void run();
  /// One fdatasync covering `target` (requested before it started). Requires fd_mu_.
  void syncLocked(std::uint64_t target);

  std::mutex mu_;  // requested_, stop_, the callbacks
  std::condition_variable cv_;
  std::uint64_t requested_ = 0;
  bool unsynced_ = false;  // a commit since the last sync started (also one of no new seq)
  bool stop_ = false;
  Nanos interval_ = 0;
  Nanos next_ =
      0;  // theoretical (monotonic) time of the next sync; one may start an interval early
  Durable on_durable_;
  std::function<void()> before_sync_;

  std::mutex fd_mu_;  // fd_ and path_: held by the thread for a whole sync
  int fd_ = -1;
  std::string path_;
  std::atomic<bool> attached_{false};
  std::atomic<std::uint64_t> durable_{0}, syncs_{0};
  std::atomic<Nanos> slowest_{0};

  std::thread thread_;  // last: started once the members above exist
};

}  // namespace gw::buffer::detail
