// The contract between the alert outbox and a destination (conventions: "Sinks say what
// happened; the forwarder decides what to do" — the same for notifiers).
#pragma once

#include <optional>
#include <string>

#include "alerts/alert_event.h"
#include "core/time.h"

namespace gw::alerts {

enum class DeliveryStatus {
  kDelivered,  ///< the remote side accepted the event (PagerDuty: 202; webhook: 2xx)
  kRetry,      ///< transient (connection error, timeout, 429, 5xx): deliver the same event later
  kPermanent,  ///< refused for good (PagerDuty: 400): record `error`, move on to the next event
};

const char* toString(DeliveryStatus s);

struct DeliveryResult {
  DeliveryStatus status = DeliveryStatus::kRetry;
  /// kRetry: the minimum wait the server asked for (Retry-After), if it did.
  std::optional<Nanos> retry_after;
  /// kRetry/kPermanent: what went wrong, with the server's own message. Safe to log and to
  /// show in `gatewayctl alerts`: never contains a secret (routing key, header values, URL path
  /// of a webhook).
  std::string error;
};

/// A destination for alert events.
///
/// Threading: deliver() runs on the outbox's worker thread, one event at a time, never
/// concurrently with itself; it blocks until the remote side answered or the timeout passed.
/// It does no retrying of its own: the outbox keeps the event and decides when to try again
/// (the forwarder, with core/retry_policy.h), so ordering per dedup key stays with the outbox.
class Notifier {
 public:
  virtual ~Notifier() = default;
  /// The configured name ("pagerduty", "ops"): what rules list in `notify`.
  virtual const std::string& name() const = 0;
  virtual DeliveryResult deliver(const AlertEvent& event) = 0;
  /// Asks a deliver() in progress (on another thread) to give up soon with kRetry; used at
  /// shutdown. Thread-safe.
  virtual void interrupt() = 0;
};

}  // namespace gw::alerts
