// The event loop's watch tick (issue 13: the loop's longest stall) at few system calls
// (issue 16).
//
// Asio keeps one timerfd for all the timers of a loop and re-arms it (timerfd_settime) after
// timers expired and whenever a new timer becomes the first due. A timer re-armed from its own
// handler costs two calls per period: its expiry, then its re-arm (it is the first due again).
// The watch keeps two timers one period apart, each re-armed two periods ahead: when one
// expires the other is already the next due, so a tick costs the one re-arm after the expiry.
// The ticks fall on multiples of the period of the steady clock (the loop's grid, kLoopGrid):
// other timers that put their due time on the grid (the pipeline's periodic timers, the MQTT
// client's batch wait, the forwarders' pace just after the tick) expire with a tick and re-arm
// nothing themselves.
// Loop thread only.
#pragma once

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include "core/steady.h"
#include "core/time.h"

namespace gw {

/// The first multiple of `grid` strictly after `t`.
constexpr Nanos gridAfter(Nanos t, Nanos grid) { return (t / grid + 1) * grid; }

/// Whether the loop watch reads the loop thread's CPU clock at a tick `late` after its due time
/// (`last_read`: when it last did, -1 for never; ticks `period` apart): at a late tick (a
/// millisecond or more: a stall whose CPU share is wanted), else every other tick. That clock
/// is a system call (CLOCK_THREAD_CPUTIME_ID, issue 16).
constexpr bool watchReadsCpu(Nanos now, Nanos last_read, Nanos late, Nanos period) {
  return last_read < 0 || late >= kNanosPerMilli || now - last_read >= period + period / 2;
}

/// Calls `tick(late)` on the loop every `period`, at the multiples of `period` of the steady
/// clock; `late` is how long after its due time the tick ran: a lower bound of how long the loop
/// went without turning. After a stall that passed several due times the ticks go on at the next
/// free multiples (no burst of ticks to catch up).
class LoopTicker {
 public:
  LoopTicker(boost::asio::io_context& io, Nanos period, std::function<void(Nanos late)> tick)
      : timers_{boost::asio::steady_timer(io), boost::asio::steady_timer(io)},
        period_(period),
        tick_(std::move(tick)) {}
  ~LoopTicker() { stop(); }
  LoopTicker(const LoopTicker&) = delete;
  LoopTicker& operator=(const LoopTicker&) = delete;

  void start() {
    stopped_ = false;
    const Nanos first = gridAfter(steadyNow(), period_);
    arm(0, first);
    arm(1, first + period_);
  }
  void stop() {
    stopped_ = true;
    for (auto& t : timers_) t.cancel();
  }
  /// When each timer is due (steady clock; for tests).
  std::array<Nanos, 2> due() const { return due_; }

 private:
  void arm(std::size_t i, Nanos due) {
    due_[i] = due;
    timers_[i].expires_at(steadyAt(due));
    timers_[i].async_wait(
        [this, i, a = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
          if (!ec && !a.expired() && !stopped_) fire(i);
        });
  }

  void fire(std::size_t i) {
    const Nanos now = steadyNow();
    const Nanos late = std::max<Nanos>(0, now - due_[i]);
    Nanos next = due_[i] + 2 * period_;
    if (next <= now) {  // a stall passed it: the next free multiple
      next = gridAfter(now, period_);
      if (next == due_[1 - i]) next += period_;
    }
    arm(i, next);
    tick_(late);
  }

  std::array<boost::asio::steady_timer, 2> timers_;
  std::array<Nanos, 2> due_{};
  Nanos period_;
  std::function<void(Nanos)> tick_;
  bool stopped_ = true;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace gw
