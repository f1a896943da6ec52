// PagerDuty Events API v2 notifier (design: "Alerts"; config: `[notify.pagerduty]`).
//
// Outcome of a POST to /v2/enqueue, as the outbox sees it:
//   2xx (PagerDuty answers 202)                    -> kDelivered
//   429, 5xx, 408, 401/403/404, transport errors   -> kRetry, with Retry-After when sent
//   400 and other 4xx                              -> kPermanent, error quotes PagerDuty's
//                                                     "message" and "errors"
// The routing key travels only in the request body: it is never logged and never part of an
// error text (scrubbed even if a server echoed it).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "alerts/alert_event.h"
#include "alerts/notifier.h"
#include "core/time.h"

namespace gw::alerts {

inline constexpr std::string_view kPagerDutyUrl = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit for payload.summary.
constexpr std::size_t kMaxSummary = 1024;

struct PagerDutyOptions {
  std::string name = "pagerduty";
  std::string url = std::string(kPagerDutyUrl);
  std::string routing_key;             ///< secret: load it with loadRoutingKey() (alerts/secret.h)
  std::string gateway_id = "gateway";  ///< payload.group and custom_details.gateway
  Nanos timeout = 10 * kNanosPerSecond;
  std::string ca_file;                ///< extra CA bundle; certificate verification is always on
  std::function<Nanos()> wall_clock;  ///< for Retry-After HTTP dates; wallNow when empty
};

/// Throws std::runtime_error (start-up/reload only) on an empty routing key, a URL that is not
/// http(s), or when libcurl cannot be set up.
std::unique_ptr<Notifier> makePagerDutyNotifier(const PagerDutyOptions& options);

/// The Events API v2 body for `event`.
/// - trigger: routing_key, event_action "trigger", dedup_key, client, and payload {summary
///   (summary(), cut to 1024 bytes at a UTF-8 boundary), source (the device, or the gateway id
///   when the device is empty), severity, timestamp (RFC 3339 ms), component (metric), group
///   (gateway id), class (rule), custom_details {gateway, rule, device, metric, statistic,
///   value, threshold, window (when a window statistic), tags}}.
/// - resolve: routing_key, event_action "resolve", dedup_key — all PagerDuty needs.
void appendPagerDutyBody(std::string& out, const AlertEvent& event, std::string_view routing_key,
                         std::string_view gateway_id);

/// PagerDuty's error text from a 400 body {"status","message","errors":[…]}: "message: e1; e2".
/// Falls back to the trimmed body when it is not that JSON.
std::string pagerDutyError(std::string_view body);

}  // namespace gw::alerts
