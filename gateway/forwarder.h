// Drives one sink from the journal: reads records after the sink's cursor (committed ones and
// those still pending in the group commit, up to Journal::sendableSeq()), hands a batch to the
// sink's worker thread, and on the answer advances the cursor (delivered), backs off and resends
// (retry) or skips and counts (rejected). The cursor the journal persists never passes
// Journal::durableSeq(). Cursors, retries and backoff live here once, for every sink
// (conventions: "Sinks say what happened").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/retry_policy.h"
#include "core/sink.h"
#include "core/time.h"

namespace boost::asio {
class io_context;
}

namespace gw::buffer {
class Journal;
}

namespace gw {

class LoopWorkMeter;

struct ForwarderOptions {
  size_t batch = 1000;
  /// Backoff after failed sends (core/retry_policy.h: exponential, equal jitter). retry_max
  /// also caps a server's Retry-After.
  Nanos retry_min = 200 * kNanosPerMilli;
  Nanos retry_max = 30 * kNanosPerSecond;
  /// Sends start at most this often while less than `batch` records are waiting, so that a
  /// steady stream read from the journal's pending tail goes out in batches of some size (each
  /// batch costs the sink, librdkafka and the event loop a dozen system calls and wakeups)
  /// rather than one per turn of the event loop. 0 = as soon as anything is waiting. 20 ms:
  /// half the batches of 10 ms (system calls and futex wakeups per reading, issue 16).
  Nanos min_interval = 20 * kNanosPerMilli;
  /// A paced send waits for the last multiple of this of the steady clock at or before
  /// last send + min_interval (just after it: pacedSendDue()), so that it goes with the event
  /// loop's tick (the MQTT batch wait ends on the same grid, core/time.h kLoopGrid): what the
  /// tick's read appended goes out at once, and the pace costs no wakeup and no timerfd re-arm
  /// of its own. 0: last send + min_interval exactly.
  Nanos pace_grid = kLoopGrid;
  /// Only alert records (the notifiers' outbox); while none is waiting the cursor follows the
  /// journal's last seq, so the outbox never holds readings back from retention.
  bool alerts_only = false;
};

/// When a paced send may go (steady clock): `interval` after `last_send`, rounded down to the
/// grid when that is still after `last_send`, then kPacedAfterTick later, so that it runs after
/// the timers due at the tick itself (the MQTT read whose readings it sends).
inline constexpr Nanos kPacedAfterTick = 1000;  // 1 µs
constexpr Nanos pacedSendDue(Nanos last_send, Nanos interval, Nanos grid) {
  const Nanos end = last_send + interval;
  if (grid <= 0) return end;
  const Nanos on_grid = end / grid * grid + kPacedAfterTick;
  return on_grid > last_send ? on_grid : end;
}

/// What the forwarder reads from the outside world; empty members mean the real thing. Tests
/// inject fakes so they can check ages and backoff exactly.
struct ForwarderEnv {
  /// wall: confirmation time, for record ages (read on the worker thread); mono: rate limiting
  /// of the retry log line.
  Clock clock;
  RetryPolicy::Uniform uniform;  ///< jitter source; seeded from std::random_device when empty
  /// Times each delivery report's handling on the loop (gateway/loop_work.h); may be null.
  LoopWorkMeter* loop_work = nullptr;
};

struct ForwarderStatus {
  std::string name;
  /// From the sink's connectivity (Sink::health) and its sends: kDown while the sink reports
  /// its connection down or after a failed send until the next success. A sink without a
  /// connection (file) is kUp until a send fails.
  LinkState state = LinkState::kUp;
  bool up = true;              ///< state == kUp
  std::string last_error;      ///< while kDown, why (the connection's cause first)
  std::uint64_t sent = 0;      ///< records confirmed by the remote side
  std::uint64_t rejected = 0;  ///< records the remote side refused for good
  std::uint64_t retries = 0;   ///< failed attempts
  std::uint64_t cursor = 0;    ///< the persisted cursor: confirmed and durable
  Nanos retry_wait = 0;  ///< the wait before the next attempt after a failure; 0 after success
  /// Age of delivered records when the remote side confirmed them (confirmation time minus
  /// event time), over the last kAgeSamples records: publish-to-sink latency when the devices'
  /// clocks are right, and how stale the data is while a backlog drains.
  double age_p50_ms = 0;
  double age_p99_ms = 0;
};

/// Threading: construct, poke() and read status() on the event loop thread only.
class Forwarder {
 public:
  Forwarder(boost::asio::io_context& io, buffer::Journal& journal, std::unique_ptr<Sink> sink,
            ForwarderOptions options, ForwarderEnv env = {});
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  /// New records were appended, committed or made durable: send if idle (cheap when busy).
  void poke();
  /// Whether a poke() for new records could start a send now: false while a batch is out, a
  /// retry waits, or a paced send is armed with less than a batch waiting (each of those pokes
  /// itself when it ends), so a caller can save posting one (issue 16: every handler posted to
  /// the loop costs it an extra epoll_wait). Cursors still follow durable pokes.
  bool wantsPoke() const;
  /// Interrupts a send in progress and joins the worker thread. Unconfirmed records stay
  /// above the cursor and are sent again after a restart.
  void stop();
  /// Computes the age quantiles: meant for status output, not for every commit.
  ForwarderStatus status() const;
  /// The highest confirmed seq (cheap).
  std::uint64_t cursor() const;
  const std::string& name() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace gw
