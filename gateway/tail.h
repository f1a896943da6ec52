// `gatewayctl tail DEVICE`: the control request and the daemon's answer (issue 14: "no way to
// see a device's last readings"). Request line: `tail <limit> <after seq> <device>` (the device
// last, so it may hold spaces). Answer: {"device":…,"last_seq":…,"readings":[<reading record>…]}
// with each reading as the Kafka sink sends it (core/record_json.h): value, time (event time),
// device_time, reference, offset_ms, seq.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"

namespace gw {

struct TailRequest {
  std::string device;
  std::uint64_t after = 0;
  size_t limit = 10;
};

/// Rows a tail looks back over at most (a bounded read for a device silent for long).
inline constexpr std::uint64_t kTailScan = 2'000'000;
/// Readings one request returns at most.
inline constexpr size_t kTailMax = 10'000;

/// Nullopt unless `line` is a tail request; a malformed one (missing device, bad numbers) is
/// returned with an empty device.
std::optional<TailRequest> parseTailRequest(std::string_view line);
/// The request line gatewayctl sends.
std::string tailRequestLine(const TailRequest& r);
/// The answer document.
std::string tailJson(std::string_view device, std::uint64_t last_seq,
                     const std::vector<ReadingRecord>& readings);

}  // namespace gw
