// Statistics of one closed window, as the windows compute them and as an aggregate record
// carries them through the journal to the sinks (design: "Windows", "Sinks").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/time.h"

namespace gw {

/// One statistic of a window; a StatSet is a bitwise or of these. The bit values are stored
/// in the journal: never renumber them.
enum class Stat : std::uint16_t {
  kCount = 1 << 0,
  kMin = 1 << 1,
  kMax = 1 << 2,
  kAvg = 1 << 3,
  kP95 = 1 << 4,
  kSum = 1 << 5,
  kP50 = 1 << 6,
  kP99 = 1 << 7,
  kStddev = 1 << 8,  ///< population standard deviation (divides by n), as stddev_over_time
  kFirst = 1 << 9,   ///< value with the earliest event time (the first to arrive on a tie)
  kLast = 1 << 10,   ///< value with the latest event time (the last to arrive on a tie)
};
using StatSet = std::uint16_t;
constexpr StatSet operator|(Stat a, Stat b) {
  return static_cast<StatSet>(static_cast<StatSet>(a) | static_cast<StatSet>(b));
}
constexpr StatSet operator|(StatSet a, Stat b) {
  return static_cast<StatSet>(a | static_cast<StatSet>(b));
}
constexpr bool has(StatSet set, Stat s) { return (set & static_cast<StatSet>(s)) != 0; }

/// Always produced, whatever `stats` says.
inline constexpr StatSet kDefaultStats =
    Stat::kCount | Stat::kMin | Stat::kMax | Stat::kAvg | Stat::kP95;
inline constexpr StatSet kAllStats = kDefaultStats | Stat::kSum | Stat::kP50 | Stat::kP99 |
                                     Stat::kStddev | Stat::kFirst | Stat::kLast;
/// The order statistics appear in (JSON fields, line-protocol fields, journal encoding).
inline constexpr Stat kStatOrder[] = {Stat::kCount,  Stat::kMin,   Stat::kMax, Stat::kAvg,
                                      Stat::kP95,    Stat::kSum,   Stat::kP50, Stat::kP99,
                                      Stat::kStddev, Stat::kFirst, Stat::kLast};

/// The config name of a statistic ("count", "min", "max", "avg", "p95", "sum", "p50", "p99",
/// "stddev", "first", "last"), also the JSON and line-protocol field name of the aggregate.
const char* toString(Stat s);
/// The inverse of toString(); nullopt for an unknown name.
std::optional<Stat> parseStat(std::string_view name);

/// How the quantiles of a window were obtained.
enum class QuantileMode : std::uint8_t {
  kExact,      ///< nearest rank on every sample (count ≤ sample_cap)
  kSketch,     ///< the sketch: |reported − exact| ≤ α·|exact|
  kCollapsed,  ///< the sketch folded its smallest magnitudes: the bound may fail near zero
};

/// One closed window's statistics. Fields not in `stats` are meaningless.
struct WindowStats {
  Nanos size = 0;   ///< window length
  Nanos start = 0;  ///< inclusive; the window ends at start + size (exclusive)
  std::uint64_t count = 0;
  std::uint64_t late = 0;  ///< late readings counted since the previous window of the series
  StatSet stats = kDefaultStats;
  QuantileMode quantiles = QuantileMode::kExact;
  double min = 0, max = 0, avg = 0, p95 = 0, sum = 0, p50 = 0, p99 = 0, stddev = 0, first = 0,
         last = 0;

  Nanos end() const { return start + size; }  ///< exclusive
  /// The value of a statistic (count as a double).
  double get(Stat s) const;
  /// Sets a non-count statistic.
  void set(Stat s, double v);
  bool operator==(const WindowStats&) const = default;
};

/// "10s", "1.5s", "5m", "2h": the shortest exact form of a duration, for window names
/// (`temperature_10s`) and human summaries.
std::string formatDuration(Nanos d);

}  // namespace gw
