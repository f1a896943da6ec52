// The contract between the forwarder and a destination (conventions: "Sinks say what
// happened; the forwarder decides what to do").
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "core/reading.h"
#include "core/time.h"

namespace gw {

enum class SendStatus {
  kDelivered,  ///< the remote side confirmed every record of the batch
  kRetry,      ///< transient failure (down, timeout, 5xx): send the same batch again later
  kRejected,   ///< the remote side refused the batch for good (4xx): skip it, count it
};

struct SendResult {
  SendStatus status = SendStatus::kRetry;
  std::string error;  ///< human-readable reason for kRetry/kRejected (server message included)
  /// kRetry: the server asked to wait at least this long (HTTP Retry-After).
  std::optional<Nanos> retry_after;
};

/// A sink's connectivity as the sink itself sees it (design: "Operations": a sink's state comes
/// from its connectivity, not from its last batch).
enum class LinkState : std::uint8_t {
  kConnecting,  ///< not confirmed yet (just started, nothing answered, nothing refused)
  kUp,          ///< a connection or a delivery was confirmed, and nothing was lost since
  kDown,        ///< the connection was refused or lost, or a probe failed: see `cause`
};

struct LinkHealth {
  LinkState state = LinkState::kConnecting;
  std::string cause;  ///< kDown: the underlying reason ("Connection refused", a TLS error, …)
  Nanos since = 0;    ///< monotonic time of the last state change
};

/// "connecting", "up", "down".
constexpr const char* toString(LinkState s) {
  return s == LinkState::kUp ? "up" : s == LinkState::kDown ? "down" : "connecting";
}

/// The health cell a sink writes from its worker (or its library's) threads and the event loop
/// reads. Thread-safe.
class LinkMonitor {
 public:
  void set(LinkState state, std::string cause = {}) {
    std::lock_guard lock(mu_);
    if (state != h_.state) h_.since = monoNow();
    h_.state = state;
    h_.cause = state == LinkState::kDown ? std::move(cause) : std::string();
  }
  LinkHealth get() const {
    std::lock_guard lock(mu_);
    return h_;
  }

 private:
  mutable std::mutex mu_;
  LinkHealth h_{LinkState::kConnecting, {}, monoNow()};
};

/// A destination for committed journal records.
///
/// Threading: send() runs on the sink's own worker thread, one batch at a time, never
/// concurrently with itself. It blocks until the remote side has confirmed or failed the whole
/// batch, and must not touch pipeline state. Records (and the Series they point to) stay valid
/// for the duration of the call.
class Sink {
 public:
  virtual ~Sink() = default;
  /// Stable name, used for the journal cursor and in status output ("kafka", "timeseries").
  virtual const std::string& name() const = 0;
  /// An empty batch, or one with no record this sink sends (the time-series sink and alerts),
  /// is kDelivered at once. A failure always comes with a non-empty `error`.
  virtual SendResult send(std::span<const ReadingRecord> batch) = 0;
  /// Asks a send() in progress (on another thread) to give up soon with kRetry; used at
  /// shutdown so stopping never waits for a long delivery timeout. Thread-safe. May be sticky
  /// (every later send() returns kRetry at once): it is only called when stopping.
  virtual void interrupt() {}
  /// Called on the worker thread about once a second while no batch is waiting (never during
  /// send()): serve the connection's events, probe an idle connection now and then. Must return
  /// within a few seconds. Default: nothing.
  virtual void idle() {}
  /// The connection's health, from any thread; nullopt for a sink without a connection (the
  /// file sink), whose state then follows its sends.
  virtual std::optional<LinkHealth> health() const { return std::nullopt; }
};

}  // namespace gw
