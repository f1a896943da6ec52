// The JSON of journal records as every sink that writes JSON sends them (design "Sinks": the
// field names are a contract). Kafka record values and the file sink's lines are these bytes.
// Appending into a caller-owned buffer keeps allocations off the per-record path.
#pragma once

#include <string>

#include "core/reading.h"

namespace gw {

/// Appends the reading's JSON value: {"device","metric","tags":{…},"value","time",
/// "device_time"?,"reference","offset_ms"?,"seq"}.
void appendReadingJson(std::string& out, const ReadingRecord& r);

/// Appends the aggregate's JSON value: {"device","metric","tags":{…},"window","window_start",
/// "window_end", then each computed statistic in core's kStatOrder ("count","min","max","avg",
/// "p95",…), "late", "quantiles":"sketch" when past the exact-sample cap, "seq"}.
void appendAggregateJson(std::string& out, const ReadingRecord& r);

}  // namespace gw
