// Minimal JSON output helpers for the hot path (record values for Kafka, webhooks).
// Appending into a caller-owned buffer keeps allocations off the per-record path.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gw::json {

/// Appends `s` as a quoted JSON string, escaping per RFC 8259 (control characters as \u00XX).
void appendString(std::string& out, std::string_view s);
/// Appends {"k":"v",…} for string pairs, in the given order.
void appendStringMap(std::string& out, const std::vector<std::pair<std::string, std::string>>& kv);
/// Appends a finite double in shortest round-trip form (with an exponent from 2^63 on, so no
/// reader takes it for a 64-bit integer); non-finite values become null.
void appendNumber(std::string& out, double v);

}  // namespace gw::json
