#include "core/window_stats.h"

#include <fmt/format.h>

namespace gw {

const char* toString(Stat s) {
  switch (s) {
    case Stat::kCount:
      return "count";
    case Stat::kMin:
      return "min";
    case Stat::kMax:
      return "max";
    case Stat::kAvg:
      return "avg";
    case Stat::kP95:
      return "p95";
    case Stat::kSum:
      return "sum";
    case Stat::kP50:
      return "p50";
    case Stat::kP99:
      return "p99";
    case Stat::kStddev:
      return "stddev";
    case Stat::kFirst:
      return "first";
    case Stat::kLast:
      return "last";
  }
  return "?";
}

std::optional<Stat> parseStat(std::string_view name) {
  for (Stat s : kStatOrder)
    if (name == toString(s)) return s;
  return std::nullopt;
}

double WindowStats::get(Stat s) const {
  switch (s) {
    case Stat::kCount:
      return static_cast<double>(count);
    case Stat::kMin:
      return min;
    case Stat::kMax:
      return max;
    case Stat::kAvg:
      return avg;
    case Stat::kP95:
      return p95;
    case Stat::kSum:
      return sum;
    case Stat::kP50:
      return p50;
    case Stat::kP99:
      return p99;
    case Stat::kStddev:
      return stddev;
    case Stat::kFirst:
      return first;
    case Stat::kLast:
      return last;
  }
  return 0;
}

void WindowStats::set(Stat s, double v) {
  switch (s) {
    case Stat::kCount:
      count = static_cast<std::uint64_t>(v);
      break;
    case Stat::kMin:
      min = v;
      break;
    case Stat::kMax:
      max = v;
      break;
    case Stat::kAvg:
      avg = v;
      break;
    case Stat::kP95:
      p95 = v;
      break;
    case Stat::kSum:
      sum = v;
      break;
    case Stat::kP50:
      p50 = v;
      break;
    case Stat::kP99:
      p99 = v;
      break;
    case Stat::kStddev:
      stddev = v;
      break;
    case Stat::kFirst:
      first = v;
      break;
    case Stat::kLast:
      last = v;
      break;
  }
}

std::string formatDuration(Nanos d) {
  if (d > 0 && d % (3600 * kNanosPerSecond) == 0)
    return fmt::format("{}h", d / 3600 / kNanosPerSecond);
  if (d > 0 && d % (60 * kNanosPerSecond) == 0) return fmt::format("{}m", d / 60 / kNanosPerSecond);
  return fmt::format("{:g}s", static_cast<double>(d) / kNanosPerSecond);
}

}  // namespace gw
