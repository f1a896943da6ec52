// Minimal JSON output helpers for the hot path (record values for Kafka, webhooks).
// Appending into a caller-owned buffer keeps allocations off the per-record path.
#pragma once

#include <string>
#include <string_view>

namespace gw::json {

/// Appends `s` as a quoted JSON string, escaping per RFC 8259 (control characters as \u00XX).
void appendString(std::string& out, std::string_view s);
/// Appends a finite double in shortest round-trip form; non-finite values become null.
void appendNumber(std::string& out, double v);

}  // namespace gw::json
