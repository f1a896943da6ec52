// Which devices a per-device view shows (design: "Limits and scale": views are filtered and
// limited): `gatewayctl sensors 'pump-*' --limit 50 --sort name`, and the Prometheus
// per-device series up to metrics.per_device_limit.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace gw {

struct DeviceClockStatus;
namespace clock {
class ClockTable;
}

struct DeviceQuery {
  enum class Sort : std::uint8_t {
    kAttention,  ///< clock beyond max_skew, then not converged, then silent longest, then name
    kName,
    kLastSeen,  ///< most recently seen first
    kRate,      ///< highest message rate first
    kOffset,    ///< largest |offset| first
  };
  std::string pattern = "*";  ///< glob on the device name (* and ?)
  std::size_t limit = 100;    ///< 0: every matching device
  Sort sort = Sort::kAttention;
};

/// Parses the arguments of a `sensors` request: `[PATTERN] [--limit N] [--sort KEY]`.
/// Returns an error message, or none.
std::optional<std::string> parseDeviceQuery(std::string_view args, DeviceQuery& q);
/// "attention", "name", "last_seen", "rate", "offset".
std::optional<DeviceQuery::Sort> parseDeviceSort(std::string_view key);

/// A DeviceQuery answered in slices (issue 13): each step() looks at no more than `slice`
/// devices and keeps the best q.limit of those seen so far (copies, O(limit) memory), so the
/// event loop can serve ingest between steps and the request waits instead.
///
/// The walk goes by position in ClockTable's dense array (forEachIn), so a step costs its slice
/// whatever the table's size. Devices added or evicted between steps
/// may be missed or seen twice (as `ps` reading /proc): the listed devices are distinct, and
/// `matched` counts what was seen. On a table that does not change between steps the result is
/// exactly selectDevices()'s.
class DeviceWalk {
 public:
  static constexpr std::size_t kSlice = 4096;

  explicit DeviceWalk(DeviceQuery q);
  ~DeviceWalk();
  DeviceWalk(const DeviceWalk&) = delete;
  DeviceWalk& operator=(const DeviceWalk&) = delete;
  /// Examines the next `slice` devices; true once every device has been examined. `mono_now`
  /// is the time rates are measured at.
  bool step(const clock::ClockTable& clocks, Nanos mono_now, std::size_t slice = kSlice);
  /// Devices examined (glob and sort key) by the last step: never more than its slice.
  std::size_t examined() const { return examined_; }
  std::size_t steps() const { return steps_; }
  /// The selected devices in the query's order, and how many matched; once done.
  std::vector<DeviceClockStatus> take(std::uint64_t& matched);

 private:
  struct Candidate;
  bool better(const Candidate& a, const Candidate& b) const;
  DeviceQuery q_;
  std::size_t next_ = 0;  ///< position in forEach's order where the next step starts
  std::size_t examined_ = 0, steps_ = 0;
  std::uint64_t matched_ = 0;
  std::vector<Candidate> best_;  ///< a heap, worst on top (all of them when limit is 0)
};

/// The devices `q` selects, at most q.limit of them, in its order; `matched` gets how many
/// matched before the limit. One pass over every device (DeviceWalk without slices): for
/// tests and the log dump, not for requests on a busy loop.
std::vector<DeviceClockStatus> selectDevices(const clock::ClockTable& clocks, const DeviceQuery& q,
                                             Nanos mono_now, std::uint64_t& matched);

}  // namespace gw
