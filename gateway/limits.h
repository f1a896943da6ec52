// `[limits]` (design: "Limits and scale"): how much per-series state the gateway keeps.
#pragma once

#include <cstdint>
#include <span>

#include "alerts/rule.h"
#include "core/config/section.h"
#include "core/time.h"

namespace gw::config {

struct LimitsConfig {
  /// Series with per-series state (clock estimate, windows, alert states) at most. Past it,
  /// readings are journaled and forwarded without windows, alerts or clock correction.
  /// 200,000 fits a 1 GiB Raspberry Pi with room to spare (README: "Performance").
  std::uint64_t max_series = 200'000;
  /// The state of a series not seen for this long is dropped (longer than any no_data_for).
  Nanos series_idle = 24 * 3600 * kNanosPerSecond;
};

/// Reads `[limits]` (or null: the defaults) and checks series_idle against the rules'
/// no_data_for. Fails with `file:line: key: reason`.
void readLimits(Section* limits, const Section& top, std::span<const alerts::Rule> rules,
                LimitsConfig& out);

}  // namespace gw::config
