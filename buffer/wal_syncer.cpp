// See wal_syncer.h.
#include "buffer/wal_syncer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/log.h"
#include "core/worker_thread.h"

namespace gw::buffer::detail {

WalSyncer::WalSyncer()
    : thread_([this] {
        becomeWorkerThread("gw-wal-sync");  // never preempts the loop (core/worker_thread.h)
        run();
      }) {}

WalSyncer::~WalSyncer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();  // it syncs what was requested first
  detach();
}

bool WalSyncer::attach(const std::string& wal_path, std::uint64_t durable_seq, std::string& error) {
  // Read-only is enough for fdatasync on Linux. O_CREAT: SQLite opens an existing -wal as it is
  // (an empty one is no WAL); it has normally created it already.
  const int fd = ::open(wal_path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = fmt::format("cannot open {}: {}", wal_path, std::strerror(errno));
    return false;
  }
  if (::fdatasync(fd) != 0) {
    error = fmt::format("fdatasync of {}: {}", wal_path, std::strerror(errno));
    ::close(fd);
    return false;
  }
  std::lock_guard fd_lock(fd_mu_);  // a running sync finishes first
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = wal_path;
  {
    std::lock_guard lock(mu_);
    if (durable_seq > durable_.load()) durable_.store(durable_seq, std::memory_order_release);
    if (durable_seq > requested_) requested_ = durable_seq;
    unsynced_ = false;  // nothing is committed between the sync above and now (the loop is here)
    attached_.store(true, std::memory_order_release);
  }
  cv_.notify_one();
  return true;
}

void WalSyncer::detach() {
  std::lock_guard fd_lock(fd_mu_);
  std::lock_guard lock(mu_);
  attached_.store(false, std::memory_order_release);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void WalSyncer::request(std::uint64_t seq) {
  {
    std::lock_guard lock(mu_);
    if (unsynced_ && seq <= requested_) return;  // the next sync covers it already
    unsynced_ = true;
    if (seq > requested_) requested_ = seq;
  }
  cv_.notify_one();
}

std::uint64_t WalSyncer::syncNow() {
  std::lock_guard fd_lock(fd_mu_);  // waits for a running sync
  std::uint64_t target = 0;
  bool unsynced = false;
  {
    std::lock_guard lock(mu_);
    target = requested_;
    unsynced = unsynced_;
    unsynced_ = false;
  }
  if (unsynced || target > durable()) syncLocked(target);
  return durable();
}

void WalSyncer::setInterval(Nanos interval) {
  std::lock_guard lock(mu_);
  interval_ = std::max<Nanos>(0, interval);
}

void WalSyncer::charge(int n) {
  if (n <= 0) return;
  {
    std::lock_guard lock(mu_);
    if (interval_ == 0) return;
    const Nanos now = monoNow();
    next_ = std::min(std::max(next_, now) + n * interval_, now + interval_ + kMaxChargeDelay);
  }
  cv_.notify_one();
}

void WalSyncer::onDurable(Durable fn) {
  std::lock_guard lock(mu_);
  on_durable_ = std::move(fn);
}

void WalSyncer::setBeforeSync(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  before_sync_ = std::move(fn);
}

void WalSyncer::syncLocked(std::uint64_t target) {
  if (fd_ < 0) return;
  std::function<void()> hook;
  {
    std::lock_guard lock(mu_);
    hook = before_sync_;
  }
  if (hook) hook();
  const Nanos start = monoNow();
  if (::fdatasync(fd_) != 0) {
    // After a failed fdatasync Linux may have marked the unwritten pages clean: a retry could
    // "succeed" without the data. Nothing committed since the last good sync can be promised,
    // so the process stops before acknowledging it; the broker redelivers what was not
    // acknowledged, and the restart reads the journal as it is on the disk.
    log::error(
        "journal: fdatasync of {} failed: {}; readings committed since the last sync "
        "cannot be made durable; exiting",
        path_, std::strerror(errno));
    std::abort();
  }
  const Nanos took = monoNow() - start;
  if (took > slowest_.load(std::memory_order_relaxed))
    slowest_.store(took, std::memory_order_relaxed);
  syncs_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (target > durable_.load()) durable_.store(target, std::memory_order_release);
}

void WalSyncer::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock,
             [this] { return stop_ || (attached_.load(std::memory_order_acquire) && unsynced_); });
    if (!attached_.load(std::memory_order_acquire) || !unsynced_) return;  // stop_
    // Spacing (setInterval): commits made while this waits are covered by the same sync. Stop
    // ends the wait: the last commits are synced at once.
    // A sync may start up to one interval early (a commit that came late after one on time
    // does not wait a whole interval); over any longer stretch the rate holds (GCRA: next_ is
    // the theoretical time of the next sync).
    for (Nanos now = monoNow(); interval_ > 0 && !stop_ && now < next_ - interval_; now = monoNow())
      cv_.wait_for(lock, std::chrono::nanoseconds(next_ - interval_ - now));
    if (!attached_.load(std::memory_order_acquire) || !unsynced_) {  // syncNow() took them
      if (stop_) return;
      continue;
    }
    if (interval_ > 0) next_ = std::max(next_, monoNow()) + interval_;
    // Everything committed before this point is in the page cache: one fdatasync covers it.
    const std::uint64_t target = requested_;
    unsynced_ = false;
    const std::uint64_t before = durable();
    lock.unlock();
    {
      std::lock_guard fd_lock(fd_mu_);
      syncLocked(target);
    }
    lock.lock();
    const std::uint64_t now = durable();
    if (now > before && on_durable_) {
      Durable fn = on_durable_;
      lock.unlock();
      fn(now);  // one wakeup of the event loop per sync
      lock.lock();
    }
  }
}

}  // namespace gw::buffer::detail
