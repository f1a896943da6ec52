#include "protocols/kafka/kafka_config.h"

#include <fmt/format.h>

namespace gw::kafka {

KafkaOptions parseConfig(config::Section& s, std::string_view gateway_id) {
  KafkaOptions o;
  o.brokers = s.requiredStr("brokers");
  o.readings_topic = s.str("readings_topic", o.readings_topic);
  o.aggregates_topic = s.str("aggregates_topic", o.aggregates_topic);
  o.alerts_topic = s.str("alerts_topic", o.alerts_topic);
  if (o.readings_topic.empty()) s.fail("readings_topic", "must not be empty");
  o.gateway_id = std::string(gateway_id);
  o.delivery_timeout = s.duration("delivery_timeout", kNanosPerSecond).value_or(o.delivery_timeout);
  if (auto props = s.entries("properties", /*scalars_ok=*/true)) {
    for (const auto& e : *props) {
      const std::string key = fmt::format("properties.{}", e.key);
      if (e.key == "bootstrap.servers") s.failAt(e.line, key, "set kafka.brokers instead");
      o.properties[e.key] = e.text;
    }
    // Checked in the order the producer applies them (our defaults, then these), so a value
    // that depends on another is judged as it will be at start.
    if (auto refused = checkProperties(o)) {
      int line = s.lineOf("properties");
      for (const auto& e : *props)
        if (e.key == refused->first) line = e.line;
      s.failAt(line, fmt::format("properties.{}", refused->first), refused->second);
    }
  }
  s.done();
  return o;
}

}  // namespace gw::kafka

namespace gw::kafka {
namespace {

std::unique_ptr<SinkConfig> parse(config::Section& s, const ParseContext& context) {
  KafkaOptions o = parseConfig(s, context.gateway_id);
  std::string target = o.brokers;
  return std::make_unique<BasicSinkConfig>(
      "kafka", std::move(target), [o](const BuildContext&) { return makeKafkaSink(o); },
      [o](Nanos timeout) { return probeKafka(o, timeout); });
}

}  // namespace

Component component() { return {ComponentKind::kSink, "kafka", false, nullptr, &parse}; }

}  // namespace gw::kafka
