#include "protocols/sparkplug/sparkplug_config.h"

namespace gw::sparkplug {

SparkplugConfig parseConfig(config::Section& s) {
  SparkplugConfig c;
  if (auto id = s.str("host_id")) {
    c.host_id = *id;
    // The id is a topic level of spBv1.0/STATE/<host_id>.
    if (c.host_id.empty() || c.host_id.find_first_of("/+#") != std::string::npos)
      s.fail("host_id", "must be a non-empty MQTT topic level (no '/', '+' or '#')");
  }
  c.host.reorder_timeout =
      s.duration("reorder_timeout", kNanosPerMilli).value_or(c.host.reorder_timeout);
  c.host.rebirth_interval =
      s.duration("rebirth_interval", kNanosPerMilli).value_or(c.host.rebirth_interval);
  if (auto n = s.integer("max_nodes", 1, 1000000)) c.host.max_nodes = static_cast<size_t>(*n);
  s.done();
  return c;
}

}  // namespace gw::sparkplug
