#include "gateway/clock_skew.h"

namespace gw::clock {

// Placeholder until the estimator lands: the reference time is the event time.
SkewEstimator::SkewEstimator(const ClockOptions& options) : options_(options) {}

Correction SkewEstimator::observe(Nanos device_time, Nanos reference_time) {
  ++state_.samples;
  state_.last_seen = reference_time;
  state_.offset = reference_time - device_time;
  return {reference_time, reference_time - device_time};
}

std::optional<Nanos> parseBrokerStamp(std::string_view value, Nanos now) {
  (void)now;
  return parseRfc3339(value);
}

}  // namespace gw::clock
