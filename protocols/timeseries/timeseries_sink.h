// Time-series sink: InfluxDB line protocol over HTTP (libcurl), gzip, batched. One endpoint
// speaks to InfluxDB 1.x (/write?db=), 2.x/3.x (/api/v2/write + token), VictoriaMetrics
// (/write) and QuestDB.
#pragma once

#include <memory>
#include <string>

#include "core/reading.h"
#include "core/sink.h"

namespace gw::timeseries {

struct TimeseriesOptions {
  std::string url = "http://localhost:8428/write";
  std::string token;          ///< sent as "Authorization: Token <token>" when set
  bool gzip = true;
  Nanos timeout = 10 * kNanosPerSecond;
};

std::unique_ptr<Sink> makeTimeseriesSink(const TimeseriesOptions& options);

/// Appends one line: `<metric>,device=<device>,<tag>=<v>… value=<value> <event time ns>\n`,
/// escaped per the line protocol spec (measurement: comma, space; tag keys/values and field
/// keys: comma, equals, space; backslashes as the spec says).
void appendLineProtocol(std::string& out, const ReadingRecord& r);

}  // namespace gw::timeseries
