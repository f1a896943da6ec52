#include "gateway/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

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
  sub.decoder.value_field = s.str("value", "value");
  if (sub.decoder.value_field.empty()) s.fail("value", nullptr, "must not be empty");
  sub.decoder.timestamp_field = s.str("timestamp", "");
  const std::string unit = s.str("timestamp_unit", "ms");
  auto u = payload::parseTimeUnit(unit);
  if (!u)
    s.fail("timestamp_unit", nullptr, fmt::format("'{}' is not s, ms, us, ns or rfc3339", unit));
  sub.decoder.timestamp_unit = *u;
  if (auto max = s.size("max_payload")) sub.decoder.max_payload = *max;
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
  k.aggregates_topic = s.str("aggregates_topic", k.aggregates_topic);
  k.alerts_topic = s.str("alerts_topic", k.alerts_topic);
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
    t.send_readings = t.send_aggregates = false;
    for (const toml::node& n : *send) {
      const auto v = n.value<std::string_view>();
      if (v == "readings")
        t.send_readings = true;
      else if (v == "aggregates")
        t.send_aggregates = true;
      else
        s.fail("send", &n, "entries must be \"readings\" or \"aggregates\"");
    }
  }
  s.done();
}

}  // namespace

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
  if (!mqtt)
    top.fail("mqtt", nullptr, "section [mqtt] is required (with at least one [[mqtt.subscribe]])");
  {
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
  // Sections of the design whose features are not in this build yet: refuse them loudly
  // rather than accept settings that would do nothing.
  for (const char* planned : {"coap", "aggregate", "alert", "notify", "metrics"}) {
    if (const toml::node* n = top.take(planned))
      top.fail(planned, n, "not available in this version of gatewayd yet");
  }
  top.done();
  return cfg;
}

}  // namespace gw::config
