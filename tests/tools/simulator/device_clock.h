// Simulated device clock errors for gw-sim: a fixed offset, a drift in ppm, steps (NTP sync)
// and resets to 1970 (power loss without an RTC), plus the random network delay range.
// Pure functions of the true time, so a test can recompute any device stamp.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace gw::sim {

/// Something that happens to a device clock `after` the run start.
struct ClockEvent {
  enum class Kind { kStep, kReset };
  Kind kind = Kind::kStep;
  Nanos after = 0;  // since the run start (true time)
  Nanos delta = 0;  // kStep: the jump; signed
};

/// How one device's clock is wrong. The default is a perfect clock.
struct ClockSpec {
  Nanos offset = 0;                // device = true + offset at the run start
  double ppm = 0;                  // rate error: the clock gains ppm·1e-6 s per true second
  std::vector<ClockEvent> events;  // sorted by `after`; steps and resets

  bool exact() const { return offset == 0 && ppm == 0 && events.empty(); }
};

/// `--clock DEVICE=SPEC`; device "*" stands for every device not named elsewhere.
struct ClockAssignment {
  std::string device;
  ClockSpec spec;
};

/// Parses "offset:+37s", "drift:-50ppm", "reset:30s", "step:+10s@20s", "none", or several of
/// them joined by ',' (offset and drift at most once). Durations take ms, s, m, h (core/time.h
/// units); offsets and steps take a sign. Returns the spec or sets `error`.
std::optional<ClockSpec> parseClockSpec(std::string_view s, std::string& error);

/// Parses "DEVICE=SPEC". The device is everything before the last '=' (names may hold '=').
std::optional<ClockAssignment> parseClockAssignment(std::string_view s, std::string& error);

/// The device's clock reading at true time `t` for a run that started at `run_start`:
/// start + offset + (t − start)·(1 + ppm·1e-6), plus every step taken so far; a reset restarts
/// the clock at 0 (1970-01-01T00:00:00Z), drifting at the same rate, and drops the offset and
/// earlier steps. Steps after a reset add to the restarted clock.
Nanos deviceTime(const ClockSpec& spec, Nanos run_start, Nanos t);

/// `--delay MIN-MAX`, e.g. "0-200ms", "50ms-1s" or one duration for a fixed delay. A bare
/// MIN takes MAX's unit.
struct DelayRange {
  Nanos min = 0;
  Nanos max = 0;
};
std::optional<DelayRange> parseDelayRange(std::string_view s, std::string& error);

/// Floor division to milliseconds (device stamps before 1970 stay monotonic).
constexpr std::int64_t floorMillis(Nanos t) {
  return t >= 0 ? t / kNanosPerMilli : -((-t + kNanosPerMilli - 1) / kNanosPerMilli);
}

}  // namespace gw::sim
