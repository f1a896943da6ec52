#include "protocols/mqtt/mqtt_config.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/host_port.h"
#include "protocols/mqtt/topic_template.h"
#include "protocols/payload/payload_config.h"

namespace gw::mqtt {
namespace {

void parseUri(config::Section& s, const std::string& uri, ClientOptions& c) {
  const auto scheme_end = uri.find("://");
  if (scheme_end == std::string::npos) s.fail("uri", "expected tcp://HOST:PORT or ssl://HOST:PORT");
  const std::string scheme = uri.substr(0, scheme_end);
  if (scheme == "tcp" || scheme == "mqtt") {
    c.tls.enabled = false;
  } else if (scheme == "ssl" || scheme == "mqtts" || scheme == "tls") {
    c.tls.enabled = true;
  } else {
    s.fail("uri", fmt::format("unknown scheme '{}' (use tcp:// or ssl://)", scheme));
  }
  std::string_view rest = std::string_view(uri).substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  std::string error;
  auto hp = parseHostPort(rest, c.tls.enabled ? 8883 : 1883, error);
  if (!hp) {
    if (error.rfind("missing host", 0) == 0) s.fail("uri", "missing host");
    s.fail("uri", error.rfind("port", 0) == 0 ? "port must be 1..65535" : error);
  }
  if (hp->port == 0) s.fail("uri", "port must be 1..65535");
  c.host = hp->host;
  c.port = hp->port;
}

void readSubscription(config::Section& s, SubscribeConfig& sub) {
  sub.topic = s.requiredStr("topic");
  if (auto qos = s.integer("qos", 0, 2)) {
    sub.qos = static_cast<int>(*qos);
    if (sub.qos == 2)
      s.fail("qos",
             "QoS 2 is not supported; use 1 (the journal makes delivery at-least-once end to end)");
  }
  const std::string format = s.str("format", "json");
  if (format == "sparkplug_b") {
    // Sparkplug names devices and metrics itself: spBv1.0/<group>/<type>/<node>[/<device>].
    sub.sparkplug = true;
    if (s.has("template"))
      s.fail("template",
             "format sparkplug_b takes device and metric from the Sparkplug topic "
             "and payload: remove the template");
    if (sub.topic.rfind("spBv1.0/", 0) != 0)
      s.fail("topic", "format sparkplug_b needs a Sparkplug B filter, e.g. \"spBv1.0/plant1/#\"");
    s.done();
    return;
  }
  sub.template_text = s.str("template", sub.topic);
  std::string error;
  auto tmpl = TopicTemplate::parse(sub.template_text, error);
  if (!tmpl) s.fail("template", error);

  auto& p = sub.payload;
  p.senml = format == "senml";
  if (!p.senml) {
    auto f = payload::parseFormat(format);
    if (!f)
      s.fail("format",
             fmt::format("'{}' is not json, value, fields, senml or sparkplug_b", format));
    p.decoder.format = *f;
  }
  // SenML packs may name their device (base name) and always name their metrics.
  if (!tmpl->capturesDevice() && !p.senml)
    s.fail("template",
           "must capture {device} (e.g. \"plant1/{line}/{device}/{metric}\"); only format "
           "senml can take the device from the payload's base name");
  if (!p.senml && p.decoder.format != payload::Format::kFields && !tmpl->capturesMetric())
    s.fail("template",
           "must capture {metric} for format json or value (format fields names metrics after "
           "the payload's fields)");
  payload::readDecoderFields(s, p.decoder);
  if (!p.decoder.timestamp_field.empty() &&
      (p.senml || p.decoder.format == payload::Format::kValue))
    s.fail("timestamp", p.senml ? "SenML records carry their own time (bt/t)"
                                : "format value has no fields; a device timestamp needs json or "
                                  "fields");
  s.done();
}

}  // namespace

Nanos batchWait(const MqttConfig& config, Nanos commit_interval) {
  const Nanos cap = commit_interval / 4;
  return std::min(config.batch_wait.value_or(commit_interval / 10), cap);
}

MqttConfig parseConfig(config::Section& s, std::string_view gateway_id,
                       config::Section* sparkplug) {
  MqttConfig m;
  m.uri = s.str("uri", "tcp://localhost:1883");
  auto& c = m.client;
  parseUri(s, m.uri, c);
  c.client_id = s.str("client_id", std::string(gateway_id));
  if (c.client_id.empty()) s.fail("client_id", "must not be empty");
  c.clean_start = s.boolean("clean_start").value_or(false);
  if (auto e = s.duration("session_expiry"))
    c.session_expiry_s =
        static_cast<std::uint32_t>(std::min<Nanos>(*e / kNanosPerSecond, 0xFFFFFFFE));
  if (auto k = s.duration("keepalive", kNanosPerSecond))
    c.keepalive_s = static_cast<std::uint16_t>(std::min<Nanos>(*k / kNanosPerSecond, 65535));
  if (auto r = s.integer("receive_maximum", 1, 65535))
    c.receive_maximum = static_cast<std::uint16_t>(*r);
  if (auto p = s.size("max_packet_size"))
    c.maximum_packet_size = static_cast<std::uint32_t>(std::min<std::uint64_t>(*p, 268435455));
  if (auto r = s.duration("reconnect_min", kNanosPerMilli)) c.reconnect_min = *r;
  if (auto r = s.duration("reconnect_max", kNanosPerMilli)) c.reconnect_max = *r;
  if (c.reconnect_max < c.reconnect_min) s.fail("reconnect_max", "must not be below reconnect_min");
  if (auto w = s.duration("batch_wait")) {
    if (*w > kNanosPerSecond) s.fail("batch_wait", "must be at most 1s (it delays every reading)");
    m.batch_wait = *w;
  }
  c.username = s.str("username", "");
  if (auto pw = s.secretFile("password_file")) c.password = *pw;
  if (s.has("password"))
    s.fail("password",
           "put the password in a file and set password_file (keeps it out of the config)");
  if (auto ca = s.path("ca_file")) c.tls.ca_file = ca->string();
  if (auto cf = s.path("cert_file")) c.tls.cert_file = cf->string();
  if (auto kf = s.path("key_file")) c.tls.key_file = kf->string();
  c.tls.verify = s.boolean("tls_verify").value_or(true);
  if (c.tls.cert_file.empty() != c.tls.key_file.empty())
    s.fail(c.tls.cert_file.empty() ? "cert_file" : "key_file",
           "cert_file and key_file go together");
  if (!c.tls.enabled && (!c.tls.ca_file.empty() || !c.tls.cert_file.empty()))
    s.fail("uri", "TLS files are set but the uri is not ssl://");

  auto subs = s.tables("subscribe");
  if (subs.empty()) s.fail("subscribe", "at least one [[mqtt.subscribe]] is required");
  for (auto& sub : subs) {
    SubscribeConfig sc;
    readSubscription(sub, sc);
    c.subscriptions.push_back({sc.topic, sc.qos});
    m.subscriptions.push_back(std::move(sc));
  }
  if (sparkplug) m.sparkplug = sparkplug::parseConfig(*sparkplug);
  s.done();
  return m;
}

}  // namespace gw::mqtt
