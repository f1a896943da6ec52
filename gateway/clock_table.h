// The per-device clock estimators, bounded (design: "Limits and scale"): at most `max_devices`
// of them, the least recently seen evicted once idle for `idle`. Eviction and the per-device
// message rate cost O(1) per reading and O(evicted) per sweep: nothing scans every device.
//
// Threading: the pipeline's event loop only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/time.h"
#include "gateway/clock_skew.h"

namespace gw::clock {

class ClockTable {
 public:
  struct Entry {
    SkewEstimator estimator;
    std::list<const std::string*>::iterator lru;  ///< position in the idle order
    Nanos last_use = 0;                           ///< monotonic
    // The message rate: samples counted since a mark that moves every ~10 s.
    Nanos mark = 0;
    std::uint64_t mark_samples = 0;
    float rate = -1;  ///< over the previous mark interval; < 0: none yet
    explicit Entry(const ClockOptions& o) : estimator(o) {}
  };

  ClockTable(ClockOptions options, std::size_t max_devices, Nanos idle)
      : options_(options), max_(max_devices), idle_(idle) {
    // Sized up front (to 262,144): growing rehashes every device in one go, a stall of
    // ~100 ms at 100,000 devices.
    map_.reserve(std::min<std::size_t>(max_devices, std::size_t{1} << 18));
  }

  /// The device's estimator, created when new; nullptr when the table is full (the caller
  /// goes on without clock correction). `now` is monotonic.
  SkewEstimator* use(std::string_view device, Nanos now);
  /// use() and the estimator's observe() in one, keeping outOfBounds() and steps() exact
  /// without a pass over the devices. nullopt when the table is full.
  std::optional<Correction> observe(std::string_view device, Nanos now, Nanos device_time,
                                    Nanos reference_time, TimeReference reference);
  /// Devices whose offset is beyond max_skew, and steps of the devices in the table (kept up
  /// to date by observe() and eviction: status reads them in O(1)).
  std::uint64_t outOfBounds() const { return out_of_bounds_; }
  std::uint64_t steps() const { return steps_; }
  /// The names of those devices, sorted (status names the first few without a pass).
  const std::set<std::string, std::less<>>& outOfBoundsNames() const { return skewed_; }
  /// Drops the estimators idle for longer than `idle` (oldest first); returns how many.
  std::size_t evictIdle(Nanos now);

  std::size_t size() const { return map_.size(); }
  std::size_t capacity() const { return max_; }
  /// Devices refused because the table was full (readings, not distinct devices).
  std::uint64_t refused() const { return refused_; }
  std::uint64_t evicted() const { return evicted_; }

  /// Samples per second of one device at `now` (monotonic), or none before 1 s of history.
  std::optional<double> rate(const Entry& e, Nanos now) const;
  /// Every entry (for views; O(devices): on request only, never per tick).
  void forEach(const std::function<void(const std::string&, const Entry&)>& fn) const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const noexcept {
      return std::hash<std::string_view>{}(v);
    }
  };
  ClockOptions options_;
  std::size_t max_;
  Nanos idle_;
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> map_;
  std::list<const std::string*> lru_;  ///< least recently used first
  std::uint64_t refused_ = 0, evicted_ = 0;
  std::uint64_t out_of_bounds_ = 0, steps_ = 0;
  std::set<std::string, std::less<>> skewed_;  ///< devices out of bounds
};

}  // namespace gw::clock
