// The whole status picture as plain structs (conventions: "Status is typed"). The engine fills
// one StatusSnapshot (Pipeline::snapshot), gatewayd adds its own part; status_json.cpp writes
// the control views and the `stats` log line from it, gateway/metrics/exposition.cpp the
// Prometheus text. Nothing renders status any other way, and nothing parses it back.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aggregators/aggregator.h"
#include "alerts/alert_engine.h"
#include "alerts/alert_event.h"
#include "buffer/journal.h"
#include "core/status.h"
#include "core/time.h"
#include "gateway/clock_skew.h"
#include "gateway/forwarder.h"
#include "gateway/loop_work.h"

namespace gw {

/// Which parts Pipeline::snapshot fills; the others stay empty. A view asks only for what it
/// shows, so `status` does not walk every device's clock nor read the outbox.
using StatusParts = std::uint32_t;
namespace status_part {
inline constexpr StatusParts kCounters = 1u << 0;  ///< messages, readings, rate_in, bad
inline constexpr StatusParts kSources = 1u << 1;
inline constexpr StatusParts kSinks = 1u << 2;    ///< forwarders + their journal backlog
inline constexpr StatusParts kJournal = 1u << 3;  ///< the journal file and every cursor
inline constexpr StatusParts kClocks = 1u << 4;   ///< summary and the gateway's own clock
inline constexpr StatusParts kDevices = 1u << 5;  ///< every device's clock, sorted, with rate
inline constexpr StatusParts kWindows = 1u << 6;
inline constexpr StatusParts kAlerts = 1u << 7;       ///< rules, counters, firing, notifiers
inline constexpr StatusParts kUndelivered = 1u << 8;  ///< the outbox (reads the journal)
inline constexpr StatusParts kAll = (1u << 9) - 1;
}  // namespace status_part

/// What gatewayd itself knows (not the pipeline); only the `status` view and the metrics show it.
struct DaemonStatus {
  std::string version;
  std::int64_t pid = 0;
  Nanos started = 0;  ///< wall time gatewayd started
  Nanos now = 0;      ///< wall time of this snapshot
  std::string config_file;
  std::uint64_t reloads = 0;
  std::uint64_t reload_failures = 0;
  std::optional<std::string> metrics;  ///< "host:port" the metrics endpoint listens on
  struct LastReload {
    Nanos time = 0;
    bool ok = true;
    std::string error;
  };
  std::optional<LastReload> last_reload;
};

struct CounterStatus {
  std::uint64_t messages = 0;  ///< over every source
  std::uint64_t readings = 0;
  std::optional<double> rate_in;  ///< readings/s over the last 1..15 s; none right after start
  std::map<std::string, std::uint64_t, std::less<>> bad;  ///< by reason
  std::uint64_t badTotal() const {
    std::uint64_t n = 0;
    for (const auto& [reason, count] : bad) n += count;
    return n;
  }
};

struct SinkStatus {
  ForwarderStatus forwarder;
  std::string target;
  buffer::SinkBacklog journal;     ///< the sink's cursor as the journal has it
  std::optional<double> rate_out;  ///< records confirmed per second, like rate_in
};

struct JournalStatus {
  std::string path;
  buffer::JournalStats stats;  ///< sinks: every cursor (sinks, windows, notifiers)
  std::uint64_t commit_failures = 0;
  std::uint64_t pending = 0;  ///< rows waiting for the next commit
  std::uint64_t max_size = 0;
  std::int64_t max_age_s = 0;
  // Over the uplinks (forwarders) only, not over in-process consumers such as the windows.
  std::uint64_t backlog = 0;  ///< the largest
  std::uint64_t dropped = 0;  ///< the sum
  std::optional<Nanos> oldest_unsent;
};

struct DeviceClockStatus {
  std::string device;
  clock::DeviceClock clock;
  std::optional<double> rate;  ///< samples per second, like rate_in
  std::optional<bool> online;  ///< as the device last announced (Sparkplug birth/death)
  std::uint64_t bad = 0;       ///< bad input named after the device since start
};

struct ClockStatus {
  std::uint64_t devices = 0;
  std::uint64_t out_of_bounds = 0;
  /// Up to kSkewNamesShown of them by name, sorted (for `status`).
  std::vector<std::string> out_of_bounds_names;
  static constexpr std::size_t kSkewNamesShown = 5;
  std::uint64_t steps = 0;
  clock::DeviceClock gateway;  ///< the gateway's clock against the broker's
  Nanos max_skew = 0;
  std::vector<DeviceClockStatus> per_device;  ///< only with kDevices: as the DeviceQuery says
  std::uint64_t matched = 0;  ///< devices the query matched (per_device may hold fewer)
};

/// Per-series state against [limits], and the event loop's responsiveness.
struct LimitsStatus {
  std::uint64_t max_series = 0;
  std::int64_t series_idle_s = 0;
  /// Readings handled without per-series state because a table was full (max_series).
  std::uint64_t readings_over_limit = 0;
  std::uint64_t clocks_evicted = 0;  ///< device clocks dropped after series_idle
  /// The longest the event loop was busy without turning (lower bound, 10 ms resolution).
  Nanos loop_stall_max = 0;     ///< since start
  Nanos loop_stall_recent = 0;  ///< over the last 10–20 s
  /// The named handler that held the loop longest (gateway/loop_work.h): over the last
  /// 10–20 s, and since start with what it did; and per kind, recent and since start.
  LoopWork loop_work_recent, loop_work_longest;
  /// The longest stall counting only the loop thread's CPU time in it (waits for a CPU or for
  /// I/O left out): what the loop's own work costs, apart from a loaded machine.
  Nanos loop_stall_cpu_max = 0, loop_stall_cpu_recent = 0;
  /// The longest time the loop thread waited for a CPU (runnable, not running) in a stall:
  /// on a loaded machine most of the stall (issue 13); the rest off the CPU was blocked.
  Nanos loop_stall_runq_max = 0, loop_stall_runq_recent = 0;
  std::array<Nanos, LoopWorkMeter::kKinds> loop_work_recent_by_kind{}, loop_work_max_by_kind{};
};

struct WindowStatus {
  aggregators::AggregatorStats stats;
  std::uint64_t memory_bytes = 0;
  std::uint64_t aggregates = 0;  ///< aggregates the pipeline received
};

/// An outbox entry a notifier has not delivered yet.
struct UndeliveredAlert {
  alerts::AlertEvent event;
  std::string notifier;
  std::uint64_t attempts = 0;  ///< only the oldest of a notifier is being tried
  std::string last_error;
};

struct AlertStatus {
  std::uint64_t rules = 0;
  bool engine = false;  ///< rules are configured (counters and firing are meaningful)
  alerts::EngineCounters counters;
  std::uint64_t events = 0;  ///< events journaled
  std::vector<alerts::AlertEvent> firing;
  std::vector<alerts::Rule> rule_list;        ///< only with kUndelivered: the configured rules
  std::vector<UndeliveredAlert> undelivered;  ///< only with kUndelivered; ≤ 50 per notifier
  std::vector<ForwarderStatus> notifiers;     ///< name: "notify.<notifier>"
};

struct StatusSnapshot {
  std::string gateway_id;
  Nanos since = 0;  ///< wall time the pipeline started
  Nanos wall = 0;   ///< wall time of the snapshot
  std::optional<DaemonStatus> daemon;
  CounterStatus counters;
  std::vector<ComponentStatus> sources;
  std::vector<SinkStatus> sinks;
  JournalStatus journal;
  ClockStatus clock;
  LimitsStatus limits;                  ///< with kCounters
  std::optional<WindowStatus> windows;  ///< when aggregation is on
  AlertStatus alerts;
};

/// Seconds since `oldest` at `wall` (never negative), or none.
inline std::optional<double> ageSeconds(std::optional<Nanos> oldest, Nanos wall) {
  if (!oldest) return std::nullopt;
  return static_cast<double>(wall > *oldest ? wall - *oldest : 0) / kNanosPerSecond;
}

/// The control socket's documents.
enum class StatusView : std::uint8_t { kStatus, kSensors, kBuffer, kSinks, kAlerts };

/// "status", "sensors", "buffer", "sinks", "alerts"; none for anything else.
std::optional<StatusView> parseStatusView(std::string_view command);
/// The parts a view shows.
StatusParts partsOf(StatusView view);
/// The parts the `stats` log line and the systemd status line show.
inline constexpr StatusParts kStatsParts =
    status_part::kCounters | status_part::kSources | status_part::kSinks | status_part::kJournal |
    status_part::kClocks | status_part::kWindows | status_part::kAlerts;

// The writers (status_json.cpp).
/// One control view as gatewayctl reads it.
std::string statusJson(StatusView view, const StatusSnapshot& s);
/// {"error":"unknown command '…'"}.
std::string unknownCommandJson(std::string_view command);
/// {"error":"…"} for a request with bad arguments.
std::string requestErrorJson(std::string_view message);
/// The `stats {…}` log line's document.
std::string statsJson(const StatusSnapshot& s);
/// SIGUSR1's `sensors {…}` log line: the gateway's and each device's clock.
std::string sensorsLogJson(const StatusSnapshot& s);
/// systemd's STATUS=, e.g. "mqtt connected, 12345 readings, kafka up backlog 0".
std::string statusLine(const StatusSnapshot& s);

}  // namespace gw
