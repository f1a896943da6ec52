// Bad input as the daemon keeps it (design: "Errors and bad input"): counts per device (bounded)
// and `gatewayctl bad`'s control request and answer. The letters themselves are in the journal's
// dead-letter table (buffer/dead_letters.h).
//
// Request line: `bad <limit>`. Answer: {"total":n,"reasons":{reason:n…},"devices":[{"device",
// "count"}…] (the most bad input first, at most kBadTopDevices),"devices_total":n,
// "other_devices":n,"caps":{"rows","bytes","excerpt"},"letters":[{"time","source","where",
// "reason","device","size","excerpt"}…] (newest first)}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "buffer/dead_letters.h"

namespace gw {

/// Devices whose bad input is counted one by one; more are summed as "other devices".
inline constexpr std::size_t kBadDeviceMax = 10'000;
/// Devices `gatewayctl bad` lists.
inline constexpr std::size_t kBadTopDevices = 10;
/// Letters one request returns at most.
inline constexpr std::size_t kBadMaxLetters = buffer::kDeadLetterMaxRows;

/// Bad input per device since start, for `gatewayctl bad` and `sensors`. Bounded: past
/// `max_devices` names, new names are summed in others() (a faulty device can invent names).
class BadDeviceCounts {
 public:
  explicit BadDeviceCounts(std::size_t max_devices = kBadDeviceMax) : max_(max_devices) {}
  void add(std::string_view device);
  /// 0 for a device without bad input.
  std::uint64_t count(std::string_view device) const;
  /// The `n` devices with the most bad input, most first (ties by name).
  std::vector<std::pair<std::string, std::uint64_t>> top(std::size_t n) const;
  std::size_t devices() const { return counts_.size(); }
  std::uint64_t others() const { return others_; }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view v) const noexcept {
      return std::hash<std::string_view>{}(v);
    }
  };
  std::size_t max_;
  std::unordered_map<std::string, std::uint64_t, Hash, std::equal_to<>> counts_;
  std::uint64_t others_ = 0;
};

/// Nullopt unless `line` is a bad request; the limit is clamped to 1..kBadMaxLetters, and a
/// malformed number gives nullopt's opposite: a request with limit 0 (an error to answer).
std::optional<std::size_t> parseBadRequest(std::string_view line);
std::string badRequestLine(std::size_t limit);

/// The answer document.
std::string badJson(const std::map<std::string, std::uint64_t, std::less<>>& reasons,
                    const BadDeviceCounts& devices, const std::vector<buffer::DeadLetter>& letters);

}  // namespace gw
