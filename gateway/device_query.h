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

/// The devices `q` selects, at most q.limit of them, in its order; `matched` gets how many
/// matched before the limit. O(devices) per call (on request only), O(limit · log) sorting.
std::vector<DeviceClockStatus> selectDevices(const clock::ClockTable& clocks, const DeviceQuery& q,
                                             Nanos mono_now, std::uint64_t& matched);

}  // namespace gw
