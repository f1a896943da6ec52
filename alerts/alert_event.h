// What a rule × series state change produces (design: "Alerts", "Sinks" alert record), its
// stable dedup key, and the JSON it travels as: the Kafka alert record (also the webhook body)
// and the outbox record the journal keeps until every notifier has delivered it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "alerts/rule.h"
#include "core/reading.h"
#include "core/time.h"
#include "core/window_stats.h"

namespace gw::alerts {

enum class AlertState : std::uint8_t { kFiring, kResolved };

const char* toString(AlertState s);  ///< "firing" | "resolved"

/// `statistic` of a no_data_for event; its value and threshold are seconds of silence.
inline constexpr std::string_view kNoDataStatistic = "no_data";

struct AlertEvent {
  std::string rule;
  Series series;  ///< device, metric, tags
  AlertState state = AlertState::kFiring;
  Severity severity = Severity::kWarning;
  std::string statistic;  ///< "value", a window statistic ("p95") or "no_data"
  double value = 0;       ///< the value that triggered/cleared (no_data: seconds silent)
  double threshold = 0;   ///< trigger threshold when firing, clear threshold when resolved
  Nanos time = 0;         ///< event time of the transition (see AlertEngine)
  Nanos window = 0;       ///< window length for a window statistic, else 0
  std::string dedup_key;  ///< stable per gateway × rule × series, ≤ kMaxDedupKey bytes
  /// The rule's notifiers when the event happened (kept with the event in the outbox, so a
  /// reload that changes the rule still delivers the resolve where the trigger went).
  std::vector<std::string> notify;

  bool operator==(const AlertEvent&) const = default;
};

/// PagerDuty's limit for dedup_key.
constexpr std::size_t kMaxDedupKey = 255;

/// `<gateway id>/<rule>/<device>/<metric>/<k>=<v>,<k>=<v>` with tags sorted by key and each
/// part percent-escaped (`%`, `/`, `,`, `=`, controls, non-ASCII → %XX), so distinct series
/// never share a key and the key is identical across restarts, hosts and builds. A key longer
/// than kMaxDedupKey keeps its first 238 bytes and ends with `~` + 16 hex digits of the
/// FNV-1a-64 of the full key (fixed algorithm, not std::hash, so it is stable).
std::string dedupKey(std::string_view gateway_id, std::string_view rule, const Series& series);

/// The Kafka alert record and webhook body (field names are a contract):
/// {"rule","device","metric","tags":{…},"state","severity","statistic","value","threshold",
///  "time","dedup_key"}; time as RFC 3339 UTC with milliseconds. Appends to `out`.
void appendAlertJson(std::string& out, const AlertEvent& event);
std::string alertJson(const AlertEvent& event);

/// The outbox record: the alert record plus "time_ns" (the exact instant, which RFC 3339
/// milliseconds would round), "window_ns" and "notify" (the targets), so a stored event comes
/// back identical.
void appendOutboxJson(std::string& out, const AlertEvent& event);
/// Reads an outbox record (or an alert record, with time rounded to ms and window 0). nullopt
/// with `error` set when the JSON is not one.
std::optional<AlertEvent> parseAlertJson(std::string_view json, std::string* error = nullptr);

/// A one-line human summary, e.g. "bearing-overheat: pump-7 bearing_temp p95 91.2 > 85" or
/// "sensor-silent: pump-7 temperature silent for 75s (no_data_for 60s)"; with tags in
/// brackets. Resolved events say "resolved: …". Not truncated (see PagerDuty's 1024 limit).
std::string summary(const AlertEvent& event);

using gw::formatDuration;  // core/window_stats.h

}  // namespace gw::alerts
