#include "gateway/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <span>

#include "alerts/secret.h"
#include "protocols/mqtt/topic_template.h"

namespace gw::config {
namespace {

namespace fs = std::filesystem;

/// Reads one TOML table; every key read is marked, and done() rejects the rest, so a typo
/// never passes silently.
class Section {
 public:
  Section(const std::string& file, const toml::table& table, std::string path, int line)
      : file_(file), table_(table), path_(std::move(path)), line_(line) {}

  [[noreturn]] void fail(std::string_view key, const toml::node* at,
                         std::string_view reason) const {
    if (!at) at = table_.get(key);
    const int line = at ? static_cast<int>(at->source().begin.line) : line_;
    throw ConfigError(fmt::format("{}:{}: {}: {}", file_, line, join(key), reason));
  }

  /// The node of a key (for error lines), without marking it used.
  const toml::node* node(std::string_view key) const { return table_.get(key); }

  const toml::node* take(std::string_view key) {
    used_.insert(std::string(key));
    return table_.get(key);
  }

  std::optional<std::string> str(std::string_view key) {
    const toml::node* n = take(key);
    if (!n) return std::nullopt;
    if (!n->is_string()) fail(key, n, "expected a string");
    return std::string(*n->value<std::string_view>());
  }
  std::string str(std::string_view key, std::string def) {
    return str(key).value_or(std::move(def));
  }
  std::string requiredStr(std::string_view key) {
    auto v = str(key);
    if (!v) fail(key, nullptr, "is required");
    if (v->empty()) fail(key, table_.get(key), "must not be empty");
    return *v;
  }

  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max) {
    const toml::node* n = take(key);
    if (!n) return std::nullopt;
    if (!n->is_integer()) fail(key, n, "expected an integer");
    const std::int64_t v = *n->value<std::int64_t>();
    if (v < min || v > max) fail(key, n, fmt::format("must be between {} and {}", min, max));
    return v;
  }

  std::optional<bool> boolean(std::string_view key) {
    const toml::node* n = take(key);
    if (!n) return std::nullopt;
    if (!n->is_boolean()) fail(key, n, "expected true or false");
    return *n->value<bool>();
  }

  std::optional<Nanos> duration(std::string_view key, Nanos min = 0) {
    const toml::node* n = take(key);
    if (!n) return std::nullopt;
    if (!n->is_string())
      fail(key, n, "expected a duration string such as \"50ms\", \"10s\", \"1h\"");
    auto v = parseDuration(*n->value<std::string_view>());
    if (!v) fail(key, n, "not a duration (use a number and a unit: ns, us, ms, s, m, h, d)");
    if (*v < min) fail(key, n, fmt::format("must be at least {}ms", min / kNanosPerMilli));
    return v;
  }

  std::optional<std::uint64_t> size(std::string_view key) {
    const toml::node* n = take(key);
    if (!n) return std::nullopt;
    if (n->is_integer() && *n->value<std::int64_t>() > 0)
      return static_cast<std::uint64_t>(*n->value<std::int64_t>());
    if (!n->is_string()) fail(key, n, "expected a size such as \"512MiB\"");
    auto v = parseSize(*n->value<std::string_view>());
    if (!v || *v == 0) fail(key, n, "not a size (use e.g. \"64KiB\", \"512MiB\", \"1GiB\")");
    return v;
  }

  std::optional<fs::path> path(std::string_view key, const fs::path& base) {
    auto v = str(key);
    if (!v) return std::nullopt;
    if (v->empty()) fail(key, table_.get(key), "must not be empty");
    fs::path p(*v);
    return p.is_absolute() ? p : base / p;
  }

  /// A sub-table, or nullptr when absent.
  const toml::table* table(std::string_view key) {
    const toml::node* n = take(key);
    if (!n) return nullptr;
    if (!n->is_table()) fail(key, n, "expected a table");
    return n->as_table();
  }
  const toml::array* array(std::string_view key) {
    const toml::node* n = take(key);
    if (!n) return nullptr;
    if (!n->is_array()) fail(key, n, "expected an array");
    return n->as_array();
  }

  Section sub(std::string_view key, const toml::table& t) const {
    return Section(file_, t, join(key), static_cast<int>(t.source().begin.line));
  }

  void done() const {
    for (auto&& [k, v] : table_) {
      if (used_.count(std::string(k.str()))) continue;
      throw ConfigError(
          fmt::format("{}:{}: {}: unknown key", file_, k.source().begin.line, join(k.str())));
    }
  }

  std::string join(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }
  const std::string& file() const { return file_; }
  int line() const { return line_; }

 private:
  const std::string& file_;
  const toml::table& table_;
  std::string path_;
  int line_;
  std::set<std::string> used_;
};

void parseUri(Section& s, const std::string& uri, MqttConfig& out) {
  const auto scheme_end = uri.find("://");
  const toml::node* at = nullptr;
  if (scheme_end == std::string::npos)
    s.fail("uri", at, "expected tcp://HOST:PORT or ssl://HOST:PORT");
  const std::string scheme = uri.substr(0, scheme_end);
  if (scheme == "tcp" || scheme == "mqtt") {
    out.client.tls.enabled = false;
  } else if (scheme == "ssl" || scheme == "mqtts" || scheme == "tls") {
    out.client.tls.enabled = true;
  } else {
    s.fail("uri", at, fmt::format("unknown scheme '{}' (use tcp:// or ssl://)", scheme));
  }
  std::string rest = uri.substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::uint16_t port = out.client.tls.enabled ? 8883 : 1883;
  std::string host = rest;
  if (!rest.empty() && rest.front() == '[') {  // [::1]:1883
    const auto close = rest.find(']');
    if (close == std::string::npos) s.fail("uri", at, "unbalanced '[' in IPv6 address");
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() == ':')
      rest = rest.substr(1);
    else
      rest.clear();
    if (!rest.empty()) {
      const int p = std::atoi(rest.c_str());
      if (p <= 0 || p > 65535 || rest.find_first_not_of("0123456789") != std::string::npos)
        s.fail("uri", at, "port must be 1..65535");
      port = static_cast<std::uint16_t>(p);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    const std::string ps = rest.substr(colon + 1);
    const int p = std::atoi(ps.c_str());
    if (ps.empty() || p <= 0 || p > 65535 ||
        ps.find_first_not_of("0123456789") != std::string::npos)
      s.fail("uri", at, "port must be 1..65535");
    port = static_cast<std::uint16_t>(p);
  }
  if (host.empty()) s.fail("uri", at, "missing host");
  out.client.host = host;
  out.client.port = port;
}

std::string readSecretFile(Section& s, std::string_view key, const fs::path& p) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) s.fail(key, nullptr, fmt::format("cannot read {}: {}", p.string(), std::strerror(errno)));
  std::string v;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) v.append(buf, n);
  std::fclose(f);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

void readGateway(Section& s, const fs::path& base, GatewayConfig& g) {
  g.id = s.str("id", g.id);
  if (g.id.empty()) s.fail("id", nullptr, "must not be empty");
  g.state_dir = s.path("state_dir", base).value_or("/var/lib/iot-gateway");
  g.control_socket = s.path("control_socket", base).value_or("/run/iot-gateway/control.sock");
  g.stats_interval = s.duration("stats_interval", kNanosPerSecond).value_or(g.stats_interval);
  s.done();
}

/// The payload keys MQTT subscriptions and CoAP resources share: value, timestamp,
/// timestamp_unit, max_payload (the format is read by the caller).
void readDecoderFields(Section& s, payload::DecoderOptions& d) {
  d.value_field = s.str("value", "value");
  if (d.value_field.empty()) s.fail("value", nullptr, "must not be empty");
  d.timestamp_field = s.str("timestamp", "");
  const std::string unit = s.str("timestamp_unit", "ms");
  auto u = payload::parseTimeUnit(unit);
  if (!u)
    s.fail("timestamp_unit", nullptr, fmt::format("'{}' is not s, ms, us, ns or rfc3339", unit));
  d.timestamp_unit = *u;
  if (auto max = s.size("max_payload")) d.max_payload = *max;
}

void readSubscription(Section& s, SubscribeConfig& sub) {
  sub.topic = s.requiredStr("topic");
  const toml::node* qos_at = s.take("qos");
  s.integer("qos", 0, 2);
  if (qos_at) {
    sub.qos = static_cast<int>(*qos_at->value<std::int64_t>());
    if (sub.qos == 2)
      s.fail("qos", qos_at,
             "QoS 2 is not supported; use 1 (the journal makes delivery at-least-once end to end)");
  }
  sub.template_text = s.str("template", sub.topic);
  std::string error;
  auto tmpl = mqtt::TopicTemplate::parse(sub.template_text, error);
  if (!tmpl) s.fail("template", nullptr, error);
  if (!tmpl->capturesDevice())
    s.fail("template", nullptr, "must capture {device} (e.g. \"plant1/{line}/{device}/{metric}\")");

  const std::string format = s.str("format", "json");
  auto f = payload::parseFormat(format);
  if (!f) s.fail("format", nullptr, fmt::format("'{}' is not json, value or fields", format));
  sub.decoder.format = *f;
  if (sub.decoder.format != payload::Format::kFields && !tmpl->capturesMetric())
    s.fail("template", nullptr,
           "must capture {metric} for format json or value (format fields names metrics after "
           "the payload's fields)");
  readDecoderFields(s, sub.decoder);
  if (sub.decoder.format == payload::Format::kValue && !sub.decoder.timestamp_field.empty())
    s.fail("timestamp", nullptr,
           "format value has no fields; a device timestamp needs json or fields");
  s.done();
}

void readMqtt(Section& s, const fs::path& base, const std::string& gateway_id, MqttConfig& m) {
  m.uri = s.str("uri", "tcp://localhost:1883");
  parseUri(s, m.uri, m);
  auto& c = m.client;
  c.client_id = s.str("client_id", gateway_id);
  if (c.client_id.empty()) s.fail("client_id", nullptr, "must not be empty");
  c.clean_start = s.boolean("clean_start").value_or(false);
  if (auto e = s.duration("session_expiry")) {
    c.session_expiry_s =
        static_cast<std::uint32_t>(std::min<Nanos>(*e / kNanosPerSecond, 0xFFFFFFFE));
  }
  if (auto k = s.duration("keepalive", kNanosPerSecond))
    c.keepalive_s = static_cast<std::uint16_t>(std::min<Nanos>(*k / kNanosPerSecond, 65535));
  if (auto r = s.integer("receive_maximum", 1, 65535))
    c.receive_maximum = static_cast<std::uint16_t>(*r);
  if (auto p = s.size("max_packet_size"))
    c.maximum_packet_size = static_cast<std::uint32_t>(std::min<std::uint64_t>(*p, 268435455));
  if (auto r = s.duration("reconnect_min", kNanosPerMilli)) c.reconnect_min = *r;
  if (auto r = s.duration("reconnect_max", kNanosPerMilli)) c.reconnect_max = *r;
  if (c.reconnect_max < c.reconnect_min)
    s.fail("reconnect_max", nullptr, "must not be below reconnect_min");
  c.username = s.str("username", "");
  if (auto pf = s.path("password_file", base)) c.password = readSecretFile(s, "password_file", *pf);
  if (s.take("password"))
    s.fail("password", nullptr,
           "put the password in a file and set password_file (keeps it out of the config)");
  if (auto ca = s.path("ca_file", base)) c.tls.ca_file = ca->string();
  if (auto cf = s.path("cert_file", base)) c.tls.cert_file = cf->string();
  if (auto kf = s.path("key_file", base)) c.tls.key_file = kf->string();
  c.tls.verify = s.boolean("tls_verify").value_or(true);
  if (c.tls.cert_file.empty() != c.tls.key_file.empty())
    s.fail(c.tls.cert_file.empty() ? "cert_file" : "key_file", nullptr,
           "cert_file and key_file go together");
  if (!c.tls.enabled && (!c.tls.ca_file.empty() || !c.tls.cert_file.empty()))
    s.fail("uri", nullptr, "TLS files are set but the uri is not ssl://");

  const toml::array* subs = s.array("subscribe");
  if (!subs || subs->empty())
    s.fail("subscribe", nullptr, "at least one [[mqtt.subscribe]] is required");
  int i = 0;
  for (const toml::node& n : *subs) {
    const std::string key = fmt::format("subscribe[{}]", i++);
    if (!n.is_table()) s.fail(key, &n, "expected a table ([[mqtt.subscribe]])");
    Section sub = s.sub(key, *n.as_table());
    SubscribeConfig sc;
    readSubscription(sub, sc);
    c.subscriptions.push_back({sc.topic, sc.qos});
    m.subscriptions.push_back(std::move(sc));
  }
  s.done();
}

void readClock(Section& s, ClockConfig& c) {
  const std::string ref = s.str("reference", "broker");
  if (ref != "broker" && ref != "receive")
    s.fail("reference", nullptr, "must be \"broker\" or \"receive\"");
  c.broker_reference = ref == "broker";
  c.broker_property = s.str("broker_property", c.broker_property);
  if (c.broker_property.empty()) s.fail("broker_property", nullptr, "must not be empty");
  c.max_skew = s.duration("max_skew").value_or(c.max_skew);
  c.step = s.duration("step", kNanosPerMilli).value_or(c.step);
  c.tolerance = s.duration("tolerance").value_or(c.tolerance);
  if (c.tolerance >= c.step) s.fail("tolerance", nullptr, "must be smaller than clock.step");
  s.done();
}

void readBuffer(Section& s, BufferConfig& b) {
  b.max_size = s.size("max_size").value_or(b.max_size);
  if (b.max_size < (1u << 20)) s.fail("max_size", nullptr, "must be at least 1MiB");
  b.max_age = s.duration("max_age", kNanosPerSecond).value_or(b.max_age);
  b.commit_interval = s.duration("commit_interval", kNanosPerMilli).value_or(b.commit_interval);
  if (b.commit_interval > 10 * kNanosPerSecond)
    s.fail("commit_interval", nullptr, "must be at most 10s (QoS 1 acknowledgements wait for it)");
  if (auto n = s.integer("batch", 1, 100000)) b.batch = static_cast<size_t>(*n);
  const std::string sync = s.str("synchronous", "normal");
  if (sync != "normal" && sync != "full")
    s.fail("synchronous", nullptr, "must be \"normal\" or \"full\"");
  b.synchronous_full = sync == "full";
  s.done();
}

void readForward(Section& s, ForwarderOptions& f) {
  if (auto n = s.integer("batch", 1, 100000)) f.batch = static_cast<size_t>(*n);
  f.retry_min = s.duration("retry_min", kNanosPerMilli).value_or(f.retry_min);
  f.retry_max = s.duration("retry_max", kNanosPerMilli).value_or(f.retry_max);
  if (f.retry_max < f.retry_min) s.fail("retry_max", nullptr, "must not be below retry_min");
}

void readKafka(Section& s, const std::string& gateway_id, KafkaConfig& k) {
  auto& o = k.options;
  o.brokers = s.requiredStr("brokers");
  o.readings_topic = s.str("readings_topic", o.readings_topic);
  k.options.aggregates_topic = s.str("aggregates_topic", k.options.aggregates_topic);
  k.options.alerts_topic = s.str("alerts_topic", k.options.alerts_topic);
  if (o.readings_topic.empty()) s.fail("readings_topic", nullptr, "must not be empty");
  o.gateway_id = gateway_id;
  o.delivery_timeout = s.duration("delivery_timeout", kNanosPerSecond).value_or(o.delivery_timeout);
  readForward(s, k.forward);
  if (const toml::table* props = s.table("properties")) {
    for (auto&& [key, v] : *props) {
      const std::string name(key.str());
      std::string value;
      if (v.is_string())
        value = *v.value<std::string>();
      else if (v.is_integer())
        value = std::to_string(*v.value<std::int64_t>());
      else if (v.is_boolean())
        value = *v.value<bool>() ? "true" : "false";
      else
        throw ConfigError(
            fmt::format("{}:{}: kafka.properties.{}: expected a string, integer or boolean",
                        s.file(), v.source().begin.line, name));
      if (name == "bootstrap.servers")
        throw ConfigError(fmt::format("{}:{}: kafka.properties.{}: set kafka.brokers instead",
                                      s.file(), v.source().begin.line, name));
      o.properties[name] = value;
    }
  }
  s.done();
}

void readTimeseries(Section& s, const fs::path& base, TimeseriesConfig& t) {
  t.options.url = s.requiredStr("url");
  if (t.options.url.rfind("http://", 0) != 0 && t.options.url.rfind("https://", 0) != 0)
    s.fail("url", nullptr, "must start with http:// or https://");
  if (auto tf = s.path("token_file", base)) t.options.token = readSecretFile(s, "token_file", *tf);
  if (s.take("token")) s.fail("token", nullptr, "put the token in a file and set token_file");
  t.options.gzip = s.boolean("gzip").value_or(true);
  t.options.timeout = s.duration("timeout", kNanosPerMilli).value_or(t.options.timeout);
  readForward(s, t.forward);
  if (const toml::array* send = s.array("send")) {
    t.options.send_readings = t.options.send_aggregates = false;
    for (const toml::node& n : *send) {
      const auto v = n.value<std::string_view>();
      if (v == "readings")
        t.options.send_readings = true;
      else if (v == "aggregates")
        t.options.send_aggregates = true;
      else
        s.fail("send", &n, "entries must be \"readings\" or \"aggregates\"");
    }
    if (!t.options.send_readings && !t.options.send_aggregates)
      s.fail("send", nullptr,
             "must name readings, aggregates or both (remove [timeseries] to send nothing)");
  }
  s.done();
}

// ---- [coap] ------------------------------------------------------------------------------

void readCoapPayload(Section& s, coap::PayloadOptions& p, bool& single_value) {
  const std::string format = s.str("format", "value");
  p.senml = format == "senml";
  if (!p.senml) {
    auto f = payload::parseFormat(format);
    if (!f)
      s.fail("format", nullptr, fmt::format("'{}' is not value, json, fields or senml", format));
    p.decoder.format = *f;
  }
  single_value = !p.senml && p.decoder.format != payload::Format::kFields;
  readDecoderFields(s, p.decoder);
  if (!p.decoder.timestamp_field.empty() &&
      (p.senml || p.decoder.format == payload::Format::kValue))
    s.fail("timestamp", nullptr,
           p.senml ? "SenML records carry their own time (bt/t)"
                   : "format value has no fields; a device timestamp needs json or fields");
}

std::string readPskKey(Section& s, const fs::path& base) {
  if (s.take("psk_key")) s.fail("psk_key", nullptr, "put the key in a file and set psk_key_file");
  auto f = s.path("psk_key_file", base);
  if (!f) return "";
  std::string key = readSecretFile(s, "psk_key_file", *f);
  if (key.empty()) s.fail("psk_key_file", nullptr, "the key file is empty");
  return key;
}

void readCoapResource(Section& s, coap::ResourceOptions& r) {
  r.path = s.requiredStr("path");
  while (!r.path.empty() && r.path.front() == '/') r.path.erase(0, 1);
  if (r.path.empty()) s.fail("path", nullptr, "must name a path below the root");
  bool single_value = false;
  readCoapPayload(s, r.payload, single_value);
  std::string error;
  auto tmpl = mqtt::TopicTemplate::parse(r.path, error);
  if (!tmpl) s.fail("path", nullptr, error);
  if (!tmpl->capturesDevice() && !r.payload.senml)
    s.fail("path", nullptr,
           "must capture {device} (e.g. \"sensors/{device}/{metric}\"); only format senml "
           "can take the device from the payload's base name");
  if (single_value && !tmpl->capturesMetric())
    s.fail("path", nullptr,
           "must capture {metric} for format value or json (fields and senml name metrics "
           "from the payload)");
  s.done();
}

void readCoapObserve(Section& s, const fs::path& base, coap::ObserveOptions& o) {
  const auto uri = s.str("uri");
  const auto discover = s.str("discover");
  if (uri && discover) s.fail("discover", nullptr, "set uri or discover, not both");
  if (!uri && !discover)
    s.fail("uri", nullptr,
           "one of uri (a resource to observe) or discover (a device to search) is required");
  const std::string key = uri ? "uri" : "discover";
  const std::string text = uri ? *uri : *discover;
  std::string error;
  auto parsed = coap::parseUri(text, error);
  if (!parsed) s.fail(key, nullptr, error);
  if (uri && parsed->path.empty())
    s.fail("uri", nullptr, "must name a resource (coap://HOST[:PORT]/PATH)");
  if (discover && (!parsed->path.empty() || !parsed->query.empty()))
    s.fail("discover", nullptr,
           "names a device (coap://HOST[:PORT]); its /.well-known/core is read, filtered by "
           "filter");
  (uri ? o.uri : o.discover) = text;
  o.filter = s.str("filter", "");
  if (!o.filter.empty()) {
    if (uri) s.fail("filter", nullptr, "only for discover");
    if (!coap::parseLinkFilter(o.filter, error)) s.fail("filter", nullptr, error);
  }
  o.path_template = s.str("template", "");
  bool template_device = false;
  if (!o.path_template.empty()) {
    if (uri) s.fail("template", nullptr, "only for discover (uri names device and metric)");
    while (!o.path_template.empty() && o.path_template.front() == '/') o.path_template.erase(0, 1);
    auto tmpl = mqtt::TopicTemplate::parse(o.path_template, error);
    if (!tmpl) s.fail("template", nullptr, error);
    template_device = tmpl->capturesDevice();
  }
  o.device = s.str("device", "");
  o.metric = s.str("metric", "");
  bool single_value = false;
  readCoapPayload(s, o.payload, single_value);
  if (o.device.empty() && !template_device && !o.payload.senml)
    s.fail("device", nullptr, "is required (the device this resource belongs to)");
  if (uri && single_value && o.metric.empty())
    s.fail("metric", nullptr, "is required for format value or json");
  o.reregister_after =
      s.duration("reregister_after", 100 * kNanosPerMilli).value_or(o.reregister_after);
  o.retry_min = s.duration("retry_min", kNanosPerMilli).value_or(o.retry_min);
  o.retry_max = s.duration("retry_max", kNanosPerMilli).value_or(o.retry_max);
  if (o.retry_max < o.retry_min) s.fail("retry_max", nullptr, "must not be below retry_min");
  if (auto r = s.duration("rediscover", kNanosPerSecond)) {
    if (uri) s.fail("rediscover", nullptr, "only for discover");
    o.rediscover = *r;
  }
  o.psk.identity = s.str("psk_identity", "");
  o.psk.key = readPskKey(s, base);
  if (parsed->secure) {
    if (!coap::dtlsSupported())
      s.fail(key, nullptr, "coaps:// needs DTLS, which this libcoap build does not support");
    if (o.psk.key.empty() || o.psk.identity.empty())
      s.fail(key, nullptr, "coaps:// needs psk_identity and psk_key_file");
  } else if (o.psk.enabled() || !o.psk.identity.empty()) {
    s.fail(o.psk.enabled() ? "psk_key_file" : "psk_identity", nullptr,
           "a pre-shared key is only used with coaps://");
  }
  s.done();
}

void readCoap(Section& s, const fs::path& base, CoapConfig& c) {
  auto& o = c.source;
  std::string error;
  if (const toml::array* resources = s.array("resource")) {
    int i = 0;
    for (const toml::node& n : *resources) {
      const std::string key = fmt::format("resource[{}]", i++);
      if (!n.is_table()) s.fail(key, &n, "expected a table ([[coap.resource]])");
      Section sub = s.sub(key, *n.as_table());
      coap::ResourceOptions r;
      readCoapResource(sub, r);
      o.resources.push_back(std::move(r));
    }
  }
  if (const toml::array* observe = s.array("observe")) {
    int i = 0;
    for (const toml::node& n : *observe) {
      const std::string key = fmt::format("observe[{}]", i++);
      if (!n.is_table()) s.fail(key, &n, "expected a table ([[coap.observe]])");
      Section sub = s.sub(key, *n.as_table());
      coap::ObserveOptions ob;
      readCoapObserve(sub, base, ob);
      o.observe.push_back(std::move(ob));
    }
  }
  if (auto listen = s.str("listen")) {
    auto hp = coap::parseHostPort(*listen, coap::kDefaultPort, error);
    if (!hp) s.fail("listen", nullptr, error);
    if (o.resources.empty())
      s.fail("listen", nullptr, "nothing to serve: add a [[coap.resource]] (or remove listen)");
    o.listen_at = *hp;
  }
  o.listen = !o.resources.empty();
  if (auto listen = s.str("dtls_listen")) {
    auto hp = coap::parseHostPort(*listen, coap::kDefaultSecurePort, error);
    if (!hp) s.fail("dtls_listen", nullptr, error);
    if (o.resources.empty())
      s.fail("dtls_listen", nullptr, "nothing to serve: add a [[coap.resource]]");
    if (!coap::dtlsSupported())
      s.fail("dtls_listen", nullptr, "this libcoap build does not support DTLS");
    o.dtls_listen = true;
    o.dtls_listen_at = *hp;
  }
  o.server_psk.identity = s.str("psk_hint", "");
  o.server_psk.key = readPskKey(s, base);
  if (o.dtls_listen && !o.server_psk.enabled())
    s.fail("dtls_listen", nullptr, "needs psk_key_file (the pre-shared key devices use)");
  if (!o.dtls_listen && (o.server_psk.enabled() || !o.server_psk.identity.empty()))
    s.fail(o.server_psk.enabled() ? "psk_key_file" : "psk_hint", nullptr,
           "a pre-shared key is only used with dtls_listen");
  if (o.resources.empty() && o.observe.empty())
    s.fail("resource", nullptr, "[coap] needs at least one [[coap.resource]] or [[coap.observe]]");
  s.done();
}

// ---- [metrics] (issue 6) -------------------------------------------------------------------

void readMetrics(Section& s, MetricsConfig& m) {
  m.listen = s.requiredStr("listen");
  std::string host = m.listen, port;
  if (!host.empty() && host.front() == '[') {  // [::1]:9108
    const auto close = host.find(']');
    if (close == std::string::npos || close + 1 >= host.size() || host[close + 1] != ':')
      s.fail("listen", nullptr, "expected [IPv6]:PORT, e.g. \"[::1]:9108\"");
    port = host.substr(close + 2);
    host = host.substr(1, close - 1);
  } else {
    const auto colon = host.rfind(':');
    if (colon == std::string::npos || host.find(':') != colon)
      s.fail("listen", nullptr, "expected ADDRESS:PORT, e.g. \"127.0.0.1:9108\"");
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF.:") != std::string::npos)
    s.fail("listen", nullptr, "the address must be numeric (127.0.0.1, 0.0.0.0, ::1)");
  const int p = std::atoi(port.c_str());
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || p <= 0 || p > 65535)
    s.fail("listen", nullptr, "port must be 1..65535");
  m.host = host;
  m.port = static_cast<std::uint16_t>(p);
  s.done();
}

// ---- [aggregate], [[alert]], [notify] ------------------------------------------------------

void readAggregate(Section& s, AggregateConfig& a) {
  a.enabled = s.boolean("enabled").value_or(true);
  aggregators::WindowOptions& w = a.windows;
  if (const toml::node* n = s.take("window")) {
    // One size ("10s") or several (["10s", "1m"]).
    std::vector<const toml::node*> items;
    if (const toml::array* arr = n->as_array()) {
      for (const toml::node& item : *arr) items.push_back(&item);
      if (items.empty()) s.fail("window", n, "needs at least one window size");
    } else {
      items.push_back(n);
    }
    w.sizes.clear();
    for (const toml::node* item : items) {
      const auto text = item->value<std::string_view>();
      const auto d = text ? parseDuration(*text) : std::nullopt;
      if (!d || *d <= 0)
        s.fail("window", item, "expected a duration such as \"10s\" or a list of them");
      if (*d < kNanosPerSecond) s.fail("window", item, "must be at least 1s");
      if (std::find(w.sizes.begin(), w.sizes.end(), *d) != w.sizes.end())
        s.fail("window", item, "window sizes must be distinct");
      w.sizes.push_back(*d);
    }
  }
  w.allowed_lateness = s.duration("allowed_lateness").value_or(w.allowed_lateness);
  if (const toml::array* stats = s.array("stats")) {
    w.stats = aggregators::kDefaultStats;
    for (const toml::node& n : *stats) {
      const auto name = n.value<std::string_view>();
      const auto st = name ? parseStat(*name) : std::nullopt;
      if (!st)
        s.fail("stats", &n,
               "entries must be count, min, max, avg, p95, sum, p50, p99, stddev, first or last");
      w.stats = static_cast<StatSet>(w.stats | *st);
    }
  }
  if (auto cap = s.integer("sample_cap", 1, 1 << 20))
    w.sample_cap = static_cast<std::uint32_t>(*cap);
  if (const toml::node* n = s.take("sketch_accuracy")) {
    const auto v = n->value<double>();
    if (!v || !(*v >= 1e-4 && *v <= 0.5))
      s.fail("sketch_accuracy", n, "must be a number between 0.0001 and 0.5 (relative error)");
    w.sketch_alpha = *v;
  }
  if (auto why = aggregators::validate(w)) s.fail("window", nullptr, *why);
  s.done();
}

std::optional<double> number(Section& s, std::string_view key) {
  const toml::node* n = s.take(key);
  if (!n) return std::nullopt;
  if (!n->is_number()) s.fail(key, n, "expected a number");
  return *n->value<double>();
}

void readRule(Section& s, alerts::Rule& r) {
  r.name = s.requiredStr("name");
  r.device = s.str("device", r.device);
  r.metric = s.str("metric", r.metric);
  if (const toml::table* tags = s.table("tags")) {
    for (auto&& [k, v] : *tags) {
      if (!v.is_string()) s.fail("tags", &v, "tag patterns must be strings");
      r.tags.push_back({std::string(k.str()), std::string(*v.value<std::string_view>())});
    }
  }
  r.on = s.str("on", r.on);
  r.above = number(s, "above");
  r.clear_below = number(s, "clear_below");
  r.below = number(s, "below");
  r.clear_above = number(s, "clear_above");
  r.for_duration = s.duration("for").value_or(0);
  r.no_data_for = s.duration("no_data_for").value_or(0);
  r.severity = s.str("severity", r.severity);
  if (const toml::array* notify = s.array("notify")) {
    for (const toml::node& n : *notify) {
      if (!n.is_string()) s.fail("notify", &n, "entries must be notifier names");
      r.notify.emplace_back(*n.value<std::string_view>());
    }
  }
  r.min_retrigger = s.duration("min_retrigger").value_or(r.min_retrigger);
}

void readPagerDuty(Section& s, const fs::path& base, alerts::PagerDutyOptions& p) {
  p.url = s.str("url", p.url);
  if (p.url.rfind("http://", 0) != 0 && p.url.rfind("https://", 0) != 0)
    s.fail("url", nullptr, "must start with https:// (or http:// for a local test receiver)");
  const auto file = s.path("routing_key_file", base);
  const std::string credential = s.str("routing_key_credential", "");
  if (s.take("routing_key"))
    s.fail("routing_key", nullptr,
           "put the routing key in a file and set routing_key_file (or routing_key_credential "
           "for systemd's LoadCredential=)");
  if (!file && credential.empty())
    s.fail("routing_key_file", nullptr,
           "is required (or routing_key_credential): the Events API v2 integration key");
  if (file && !credential.empty())
    s.fail("routing_key_credential", nullptr, "set routing_key_file or routing_key_credential");
  const auto key = alerts::loadRoutingKey(file.value_or(fs::path()), credential,
                                          std::getenv("CREDENTIALS_DIRECTORY"));
  if (!key.ok()) s.fail(file ? "routing_key_file" : "routing_key_credential", nullptr, key.error);
  p.routing_key = key.value;
  p.timeout = s.duration("timeout", kNanosPerMilli).value_or(p.timeout);
  if (auto ca = s.path("ca_file", base)) p.ca_file = ca->string();
  s.done();
}

void readWebhook(Section& s, const fs::path& base, alerts::WebhookOptions& w) {
  w.url = s.requiredStr("url");
  if (w.url.rfind("http://", 0) != 0 && w.url.rfind("https://", 0) != 0)
    s.fail("url", nullptr, "must start with https:// or http://");
  if (const toml::table* headers = s.table("headers")) {
    for (auto&& [k, v] : *headers) {
      if (!v.is_string()) s.fail("headers", &v, "header values must be strings");
      w.headers.emplace_back(std::string(k.str()), std::string(*v.value<std::string_view>()));
    }
  }
  w.timeout = s.duration("timeout", kNanosPerMilli).value_or(w.timeout);
  if (auto ca = s.path("ca_file", base)) w.ca_file = ca->string();
  s.done();
}

void readNotify(Section& s, const fs::path& base, const std::string& gateway_id, NotifyConfig& n) {
  if (const toml::table* t = s.table("pagerduty")) {
    Section pd = s.sub("pagerduty", *t);
    n.pagerduty.emplace();
    n.pagerduty->gateway_id = gateway_id;
    readPagerDuty(pd, base, *n.pagerduty);
  }
  if (const toml::table* t = s.table("webhook")) {
    Section hooks = s.sub("webhook", *t);
    for (auto&& [name, node] : *t) {
      const std::string key(name.str());
      const toml::table* ht = hooks.table(key);
      if (key == "pagerduty")
        hooks.fail(key, ht, "the name pagerduty is taken by [notify.pagerduty]");
      Section h = hooks.sub(key, *ht);
      auto& w = n.webhooks.emplace_back();
      w.name = key;
      readWebhook(h, base, w);
    }
  }
  n.retry.initial = s.duration("retry_initial", kNanosPerMilli).value_or(n.retry.initial);
  n.retry.max = s.duration("retry_max", kNanosPerMilli).value_or(n.retry.max);
  if (n.retry.max < n.retry.initial) s.fail("retry_max", nullptr, "must be at least retry_initial");
  s.done();
}

}  // namespace

std::vector<std::string> NotifyConfig::names() const {
  std::vector<std::string> out;
  if (pagerduty) out.push_back(pagerduty->name);
  for (const auto& w : webhooks) out.push_back(w.name);
  return out;
}

Config load(const fs::path& file) {
  Config cfg;
  cfg.file = file;
  const std::string name = file.string();
  toml::table root;
  try {
    root = toml::parse_file(name);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    if (src.begin.line == 0)  // could not open
      throw ConfigError(fmt::format("{}:0: (file): {}", name, e.description()));
    throw ConfigError(fmt::format("{}:{}: (syntax): {}", name, src.begin.line, e.description()));
  }
  const fs::path base = fs::absolute(file).parent_path();
  Section top(name, root, "", 1);

  if (const toml::table* t = top.table("gateway")) {
    Section s = top.sub("gateway", *t);
    readGateway(s, base, cfg.gateway);
  } else {
    cfg.gateway.state_dir = "/var/lib/iot-gateway";
    cfg.gateway.control_socket = "/run/iot-gateway/control.sock";
  }
  const toml::table* mqtt = top.table("mqtt");
  if (mqtt) {
    Section s = top.sub("mqtt", *mqtt);
    readMqtt(s, base, cfg.gateway.id, cfg.mqtt);
  }
  if (const toml::table* t = top.table("clock")) {
    Section s = top.sub("clock", *t);
    readClock(s, cfg.clock);
  }
  if (const toml::table* t = top.table("buffer")) {
    Section s = top.sub("buffer", *t);
    readBuffer(s, cfg.buffer);
  }
  if (const toml::table* t = top.table("kafka")) {
    Section s = top.sub("kafka", *t);
    cfg.kafka.emplace();
    readKafka(s, cfg.gateway.id, *cfg.kafka);
  }
  if (const toml::table* t = top.table("timeseries")) {
    Section s = top.sub("timeseries", *t);
    cfg.timeseries.emplace();
    readTimeseries(s, base, *cfg.timeseries);
  }
  if (const toml::table* t = top.table("coap")) {
    Section s = top.sub("coap", *t);
    cfg.coap.emplace();
    readCoap(s, base, *cfg.coap);
  }
  if (const toml::table* t = top.table("metrics")) {
    Section s = top.sub("metrics", *t);
    cfg.metrics.emplace();
    readMetrics(s, *cfg.metrics);
  }
  if (const toml::table* t = top.table("aggregate")) {
    Section s = top.sub("aggregate", *t);
    readAggregate(s, cfg.aggregate);
  }
  if (const toml::table* t = top.table("notify")) {
    Section s = top.sub("notify", *t);
    readNotify(s, base, cfg.gateway.id, cfg.notify);
  }
  if (const toml::array* rules = top.array("alert")) {
    const std::vector<std::string> notifiers = cfg.notify.names();
    std::set<std::string> names;
    for (size_t i = 0; i < rules->size(); ++i) {
      const toml::node& n = *rules->get(i);
      if (!n.is_table()) top.fail("alert", &n, "use [[alert]] tables");
      Section s = top.sub(fmt::format("alert[{}]", i), *n.as_table());
      alerts::Rule& r = cfg.alerts.emplace_back();
      readRule(s, r);
      s.done();
      for (const alerts::RuleError& e :
           alerts::validate(r, std::span<const std::string>(notifiers))) {
        const auto dot = e.key.find('.');
        s.fail(e.key, s.node(e.key.substr(0, dot)), e.message);
      }
      if (!names.insert(r.name).second)
        s.fail("name", nullptr, fmt::format("another [[alert]] is named '{}' already", r.name));
      if (r.on != "value" && r.no_data_for == 0) {
        const auto st = parseStat(r.on);
        if (!cfg.aggregate.enabled)
          s.fail("on", nullptr, "a window statistic needs the windows ([aggregate] enabled)");
        if (st && !has(cfg.aggregate.windows.stats, *st))
          s.fail("on", nullptr,
                 fmt::format("the windows do not compute {}: add it to [aggregate] stats", r.on));
        if (!st)
          s.fail("on", nullptr,
                 fmt::format("the windows cannot compute {} (available: count, min, max, avg, "
                             "p95, sum, p50, p99, stddev, first, last)",
                             r.on));
      }
    }
  }
  if (!mqtt && !cfg.coap)
    top.fail("mqtt", nullptr,
             "a source is required: [mqtt] (with at least one [[mqtt.subscribe]]) or [coap]");
  top.done();
  return cfg;
}

}  // namespace gw::config
