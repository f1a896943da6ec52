#include "gateway/clock_table.h"

namespace gw::clock {
namespace {
constexpr Nanos kRateInterval = 10 * kNanosPerSecond;
}

SkewEstimator* ClockTable::use(std::string_view device, Nanos now) {
  auto it = map_.find(device);
  if (it == map_.end()) {
    if (map_.size() >= max_) {
      ++refused_;
      return nullptr;
    }
    it = map_.emplace(std::string(device), Entry(options_)).first;
    it->second.lru = lru_.insert(lru_.end(), &it->first);
    it->second.mark = now;
  } else {
    lru_.splice(lru_.end(), lru_, it->second.lru);  // most recently used last
  }
  Entry& e = it->second;
  e.last_use = now;
  if (now - e.mark >= kRateInterval) {
    const std::uint64_t samples = e.estimator.state().samples;
    e.rate = static_cast<float>(static_cast<double>(samples - e.mark_samples) * kNanosPerSecond /
                                static_cast<double>(now - e.mark));
    e.mark = now;
    e.mark_samples = samples;
  }
  return &e.estimator;
}

std::optional<Correction> ClockTable::observe(std::string_view device, Nanos now, Nanos device_time,
                                              Nanos reference_time, TimeReference reference) {
  SkewEstimator* e = use(device, now);
  if (e == nullptr) return std::nullopt;
  const DeviceClock before = e->state();
  const Correction c = e->observe(device_time, reference_time, reference);
  const DeviceClock& after = e->state();
  out_of_bounds_ = out_of_bounds_ - before.out_of_bounds + after.out_of_bounds;
  steps_ += after.steps - before.steps;
  if (before.out_of_bounds != after.out_of_bounds) {
    if (after.out_of_bounds)
      skewed_.emplace(device);
    else if (auto it = skewed_.find(device); it != skewed_.end())
      skewed_.erase(it);
  }
  return c;
}

std::size_t ClockTable::evictIdle(Nanos now) {
  std::size_t n = 0;
  while (!lru_.empty()) {
    auto it = map_.find(*lru_.front());
    if (now - it->second.last_use < idle_) break;
    out_of_bounds_ -= it->second.estimator.state().out_of_bounds;
    steps_ -= it->second.estimator.state().steps;
    if (it->second.estimator.state().out_of_bounds) skewed_.erase(it->first);
    lru_.pop_front();
    map_.erase(it);
    ++n;
  }
  evicted_ += n;
  return n;
}

std::optional<double> ClockTable::rate(const Entry& e, Nanos now) const {
  // Since the mark when that is at least 1 s ago (a silent device decays towards 0), else
  // the previous interval's rate.
  if (now - e.mark >= kNanosPerSecond)
    return static_cast<double>(e.estimator.state().samples - e.mark_samples) * kNanosPerSecond /
           static_cast<double>(now - e.mark);
  if (e.rate >= 0) return e.rate;
  return std::nullopt;
}

void ClockTable::forEach(const std::function<void(const std::string&, const Entry&)>& fn) const {
  for (const auto& [device, e] : map_) fn(device, e);
}

}  // namespace gw::clock
