// A wakeup from other threads to one waiting thread, with a timeout: one futex system call on
// each side, and none for a notify() while the waiter runs (issue 16). A condition variable
// costs a third call per wakeup: the woken waiter takes its mutex back marked contended
// (glibc), so unlocking it calls FUTEX_WAKE although nobody waits.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <ctime>

#include "core/time.h"

namespace gw {

/// One waiter; any number of notifiers. A notify() while nobody waits is kept for the next
/// waitFor(), and notifications before a waitFor() returns count as one: the waiter looks at
/// what it waits for after every return. notify() releases, waitFor() acquires (what was
/// written before notify() is visible after waitFor() returns true).
class WakeFlag {
 public:
  void notify() {
    if (state_.exchange(kSet, std::memory_order_acq_rel) == kSleeping) {
      futex(FUTEX_WAKE_PRIVATE, 1, nullptr);
    }
  }

  /// Waits until notified or `timeout` has passed; true when notified. Clears the flag.
  bool waitFor(Nanos timeout) {
    const Nanos deadline = monoNow() + timeout;
    for (;;) {
      std::uint32_t seen = kClear;
      if (!state_.compare_exchange_strong(seen, kSleeping, std::memory_order_acquire)) {
        break;  // kSet
      }
      const Nanos left = deadline - monoNow();
      if (left > 0) {
        const timespec ts{.tv_sec = left / kNanosPerSecond, .tv_nsec = left % kNanosPerSecond};
        futex(FUTEX_WAIT_PRIVATE, kSleeping, &ts);
      }
      seen = kSleeping;
      if (state_.compare_exchange_strong(seen, kClear, std::memory_order_acquire)) {
        if (left <= 0 || monoNow() >= deadline) return false;
        continue;  // woken without a notify (a signal): wait out the rest
      }
      break;  // kSet
    }
    state_.exchange(kClear, std::memory_order_acq_rel);
    return true;
  }

 private:
  static constexpr std::uint32_t kClear = 0, kSet = 1, kSleeping = 2;

  void futex(int op, std::uint32_t value, const timespec* timeout) {
    static_assert(sizeof(state_) == sizeof(std::uint32_t) && decltype(state_)::is_always_lock_free);
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), op, value, timeout, nullptr, 0);
  }

  std::atomic<std::uint32_t> state_{kClear};
};

}  // namespace gw
