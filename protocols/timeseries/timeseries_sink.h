// Time-series sink: InfluxDB line protocol over HTTP (the one client, protocols/http), gzip,
// batched. One endpoint speaks to InfluxDB 1.x (/write?db=), 2.x/3.x (/api/v2/write + token),
// VictoriaMetrics (/write) and QuestDB.
//
// Outcome of a POST, as the forwarder sees it:
//   2xx                                  -> kDelivered
//   413 (body too large)                 -> the batch is split in halves, sent in turn
//   429, 5xx, 401/403/404/408, 1xx/3xx,
//   connection/TLS/timeout errors,
//   interrupt()                          -> kRetry (the batch is fine; the endpoint is not),
//                                           with the server's Retry-After when it sent one
//   other 4xx (bad data)                 -> kRejected, server message in `error`
// Writes are idempotent (same series + timestamp overwrite), so re-sending a batch after a
// partial success is harmless.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/reading.h"
#include "core/sink.h"

namespace gw::timeseries {

struct TimeseriesOptions {
  std::string url = "http://localhost:8428/write";
  std::string token;  ///< sent as "Authorization: Token <token>" when set
  bool gzip = true;
  Nanos timeout = 10 * kNanosPerSecond;         ///< the whole request
  Nanos connect_timeout = 5 * kNanosPerSecond;  ///< TCP + TLS handshake
  std::string ca_file;  ///< extra CA bundle; certificate verification is always on
  /// For Retry-After HTTP dates; wallNow when empty (tests inject one).
  std::function<Nanos()> wall_clock;
  bool send_readings = true;    ///< timeseries.send has "readings"
  bool send_aggregates = true;  ///< timeseries.send has "aggregates"
};

/// Throws std::runtime_error (start-up/reload only) when the URL is not http(s) or libcurl or
/// zlib cannot be set up. The sink reuses one connection (keep-alive) across batches.
std::unique_ptr<Sink> makeTimeseriesSink(const TimeseriesOptions& options);

/// Appends one line: `<metric>,device=<device>,<tag>=<v>… value=<value> <event time ns>\n`,
/// escaped per the line protocol spec (measurement: comma, space; tag keys/values and field
/// keys: comma, equals, space; backslashes as the spec says).
///
/// - A backslash is always written as `\\` (the spec reads `\\` as one backslash), so a name
///   ending in a backslash can never escape the delimiter after it.
/// - Newlines (CR, LF) cannot be represented and become a space (escaped as usual).
/// - Tags with an empty key or value are omitted (line protocol forbids them); so is a template
///   tag named `device` (the series' device wins). Order: `device` first, then template order.
/// - An aggregate is `<metric>_<window>,device=…,<tags> count=<n>i,min=…,max=…,avg=…,p95=…,
///   …,late=<n>i <window start ns>` (window as "10s", "1m"; statistics in kStatOrder).
/// - Appends nothing for a record that cannot be written: an alert, a reading with a
///   non-finite value, an empty metric, or a metric starting with `#` (the line would be a
///   comment). Callers detect this by size.
void appendLineProtocol(std::string& out, const ReadingRecord& r);

}  // namespace gw::timeseries
