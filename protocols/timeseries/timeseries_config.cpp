#include "protocols/timeseries/timeseries_config.h"

#include "protocols/http/client.h"
#include "protocols/http/probe.h"

namespace gw::timeseries {

TimeseriesOptions parseConfig(config::Section& s) {
  TimeseriesOptions o;
  o.url = s.requiredStr("url");
  std::string error;
  if (!http::parseHttpUrl(o.url, false, error)) s.fail("url", error);
  if (auto token = s.secretFile("token_file")) o.token = *token;
  if (s.has("token")) s.fail("token", "put the token in a file and set token_file");
  o.gzip = s.boolean("gzip").value_or(true);
  o.timeout = s.duration("timeout", kNanosPerMilli).value_or(o.timeout);
  o.connect_timeout = s.duration("connect_timeout", kNanosPerMilli).value_or(o.connect_timeout);
  if (auto ca = s.path("ca_file")) o.ca_file = ca->string();
  if (auto send = s.strings("send")) {
    o.send_readings = o.send_aggregates = false;
    for (size_t i = 0; i < send->size(); ++i) {
      if ((*send)[i] == "readings")
        o.send_readings = true;
      else if ((*send)[i] == "aggregates")
        o.send_aggregates = true;
      else
        s.failElement("send", i, "entries must be \"readings\" or \"aggregates\"");
    }
    if (!o.send_readings && !o.send_aggregates)
      s.fail("send",
             "must name readings, aggregates or both (remove [timeseries] to send nothing)");
  }
  s.done();
  return o;
}

}  // namespace gw::timeseries

namespace gw::timeseries {
namespace {

/// The URL as status shows it: the database (`?db=`, `?org=&bucket=`) stays, InfluxDB 1.x
/// credentials (`u`, `p`) and user info do not.
std::string target(const std::string& url) {
  std::string error;
  const auto parts = http::parseHttpUrl(url, false, error);  // parseConfig checked it
  std::string out = parts->safe;
  char sep = '?';
  for (size_t pos = 0; pos <= parts->query.size() && !parts->query.empty();) {
    size_t end = parts->query.find('&', pos);
    if (end == std::string::npos) end = parts->query.size();
    const std::string_view item = std::string_view(parts->query).substr(pos, end - pos);
    const std::string_view key = item.substr(0, item.find('='));
    out += sep;
    sep = '&';
    out += key == "u" || key == "p" ? std::string(key) + "=<redacted>" : std::string(item);
    pos = end + 1;
  }
  return out;
}

std::unique_ptr<SinkConfig> parse(config::Section& s, const ParseContext&) {
  TimeseriesOptions o = parseConfig(s);
  std::string target = timeseries::target(o.url);
  return std::make_unique<BasicSinkConfig>(
      "timeseries", std::move(target), [o](const BuildContext&) { return makeTimeseriesSink(o); },
      [o](Nanos timeout) {
        http::ProbeOptions p{o.url, o.ca_file, {}, true};
        if (!o.token.empty()) p.headers.push_back("Authorization: Token " + o.token);
        return http::probe(p, timeout);
      });
}

}  // namespace

Component component() { return {ComponentKind::kSink, "timeseries", false, nullptr, &parse}; }

}  // namespace gw::timeseries
