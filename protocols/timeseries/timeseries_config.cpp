#include "protocols/timeseries/timeseries_config.h"

namespace gw::timeseries {

TimeseriesOptions parseConfig(config::Section& s) {
  TimeseriesOptions o;
  o.url = s.requiredStr("url");
  if (o.url.rfind("http://", 0) != 0 && o.url.rfind("https://", 0) != 0)
    s.fail("url", "must start with http:// or https://");
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

/// A URL without user:password@ (never show a secret).
std::string redactUrl(std::string_view url) {
  const auto scheme = url.find("://");
  const auto start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const auto at = url.find('@', start);
  const auto slash = url.find('/', start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && at > slash))
    return std::string(url);
  return std::string(url.substr(0, start)) + std::string(url.substr(at + 1));
}

std::unique_ptr<SinkConfig> parse(config::Section& s, const ParseContext&) {
  TimeseriesOptions o = parseConfig(s);
  std::string target = redactUrl(o.url);
  return std::make_unique<BasicSinkConfig>(
      "timeseries", std::move(target),
      [o = std::move(o)](const BuildContext&) { return makeTimeseriesSink(o); });
}

}  // namespace

Component component() { return {ComponentKind::kSink, "timeseries", false, nullptr, &parse}; }

}  // namespace gw::timeseries
