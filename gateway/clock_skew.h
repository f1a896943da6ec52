// Clock-skew correction (design: "Clock skew"): per device, the offset θ = reference −
// device_time is estimated with a filter robust to network delay (delay only ever adds, so a
// low envelope, as NTP's clock filter does), drift is tracked, steps are detected and
// re-converged within a few messages, and offsets beyond max_skew are flagged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/time.h"

namespace gw::clock {

struct ClockOptions {
  Nanos max_skew = 24 * 3600 * kNanosPerSecond;  ///< |offset| above this is flagged
  Nanos step = 5 * kNanosPerSecond;              ///< a jump larger than this is a step
};

/// One device's clock as the gateway sees it (shown by `gatewayctl sensors`).
struct DeviceClock {
  Nanos offset = 0;                ///< current estimate of reference − device time
  double drift_ppm = 0;            ///< device clock rate error (positive: device runs slow)
  std::uint64_t samples = 0;       ///< observations with a device time
  std::uint64_t steps = 0;         ///< steps detected
  std::optional<Nanos> last_step;  ///< reference time of the last step
  bool out_of_bounds = false;      ///< |offset| > max_skew
  bool converged = false;          ///< enough samples since the last step to trust the estimate
  TimeReference reference = TimeReference::kReceive;  ///< reference of the last observation
  Nanos last_seen = 0;                                ///< reference time of the last observation
};

struct Correction {
  Nanos event_time = 0;
  Nanos offset = 0;  ///< applied: event_time − device_time (0 when there is no device time)
};

/// The estimator for one clock. Not thread-safe; owned by the pipeline's event loop.
class SkewEstimator {
 public:
  explicit SkewEstimator(const ClockOptions& options);
  /// Feeds one observation and returns the corrected event time for it. While the estimate is
  /// not yet trustworthy (first samples, a step being confirmed) the reference time is used.
  Correction observe(Nanos device_time, Nanos reference_time);
  const DeviceClock& state() const { return state_; }

 private:
  struct Sample {
    Nanos device_time;
    Nanos offset;
  };
  ClockOptions options_;
  DeviceClock state_;
  // Implementation state (filter window, drift fit, step candidate) lives here.
  std::vector<Sample> window_;
  size_t next_ = 0;
  std::vector<Sample> candidate_;  ///< samples consistent with a suspected step
};

/// Parses a broker timestamp property: epoch milliseconds ("1795256130123", fractional
/// allowed) or RFC 3339. Rejects garbage, empty values and absurd values (before 2000 or more
/// than a day ahead of `now`).
std::optional<Nanos> parseBrokerStamp(std::string_view value, Nanos now);

}  // namespace gw::clock
