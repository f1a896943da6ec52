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
