// Time inside the daemon: int64 nanoseconds since the Unix epoch, UTC (design: "Time").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace gw {

using Nanos = std::int64_t;

constexpr Nanos kNanosPerMicro = 1'000;
constexpr Nanos kNanosPerMilli = 1'000'000;
constexpr Nanos kNanosPerSecond = 1'000'000'000;

/// The event loop's timer grid: the loop watch ticks at multiples of it on the steady clock
/// (gateway/pipeline_watch.h), and timers that end on it (the pipeline's periodic ones, the MQTT
/// batch wait) expire with a tick instead of re-arming the loop's timerfd themselves (issue 16).
constexpr Nanos kLoopGrid = 10 * kNanosPerMilli;

/// Wall-clock time now (CLOCK_REALTIME).
Nanos wallNow();
/// Monotonic time now (CLOCK_MONOTONIC), for intervals and deadlines.
Nanos monoNow();

/// Where a component reads the time: the real clocks unless a test injects its own
/// (conventions: "Inject time").
struct Clock {
  std::function<Nanos()> wall = &wallNow;
  std::function<Nanos()> mono = &monoNow;
};

/// Appends `t` as RFC 3339 UTC with milliseconds, e.g. 2026-11-21T10:15:30.123Z.
/// Does not allocate beyond growing `out`.
void appendRfc3339Millis(std::string& out, Nanos t);
std::string formatRfc3339Millis(Nanos t);

/// Parses RFC 3339 (`2026-11-21T10:15:30Z`, fractional seconds up to ns, `Z` or `±hh:mm`).
std::optional<Nanos> parseRfc3339(std::string_view s);

/// The instant of a UTC calendar date and time; nullopt outside what int64 nanoseconds hold
/// (1678..2261) or for fields out of range (second 60 is allowed for a leap second).
std::optional<Nanos> civilToNanos(int year, int month, int day, int hour, int minute, int second);

/// Parses a duration such as "50ms", "10s", "1.5h", "7d", "250us", "1m" (minute).
/// A bare number is rejected: the unit must be explicit.
std::optional<Nanos> parseDuration(std::string_view s);

/// Parses a byte size such as "512MiB", "1GB", "64KiB", "4096" (bytes).
std::optional<std::uint64_t> parseSize(std::string_view s);

/// Parses a broker timestamp property: epoch milliseconds ("1795256130123", fractional
/// allowed) or RFC 3339. Rejects garbage, empty values and absurd values (before 2000 or more
/// than a day ahead of `now`; the second check is skipped when `now` itself is before 2000,
/// since a gateway with a wrong clock cannot judge what is in the future).
std::optional<Nanos> parseBrokerStamp(std::string_view value, Nanos now);

}  // namespace gw
