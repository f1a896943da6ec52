// The contract between the forwarder and a destination (conventions: "Sinks say what
// happened; the forwarder decides what to do").
#pragma once

#include <optional>
#include <span>
#include <string>

#include "core/reading.h"

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
};

}  // namespace gw
