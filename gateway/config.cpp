#include "gateway/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <span>

#include "alerts/notify_config.h"
#include "core/host_port.h"
#include "protocols/coap/coap_config.h"
#include "protocols/kafka/kafka_config.h"
#include "protocols/timeseries/timeseries_config.h"

namespace gw::config {
namespace {

namespace fs = std::filesystem;

void readGateway(Section& s, GatewayConfig& g) {
  g.id = s.str("id", g.id);
  if (g.id.empty()) s.fail("id", "must not be empty");
  g.state_dir = s.path("state_dir").value_or("/var/lib/iot-gateway");
  g.control_socket = s.path("control_socket").value_or("/run/iot-gateway/control.sock");
  g.stats_interval = s.duration("stats_interval", kNanosPerSecond).value_or(g.stats_interval);
  s.done();
}

void readClock(Section& s, ClockConfig& c) {
  const std::string ref = s.str("reference", "broker");
  if (ref != "broker" && ref != "receive") s.fail("reference", "must be \"broker\" or \"receive\"");
  c.broker_reference = ref == "broker";
  c.broker_property = s.str("broker_property", c.broker_property);
  if (c.broker_property.empty()) s.fail("broker_property", "must not be empty");
  c.max_skew = s.duration("max_skew").value_or(c.max_skew);
  c.step = s.duration("step", kNanosPerMilli).value_or(c.step);
  c.tolerance = s.duration("tolerance").value_or(c.tolerance);
  if (c.tolerance >= c.step) s.fail("tolerance", "must be smaller than clock.step");
  s.done();
}

void readBuffer(Section& s, BufferConfig& b) {
  b.max_size = s.size("max_size").value_or(b.max_size);
  if (b.max_size < (1u << 20)) s.fail("max_size", "must be at least 1MiB");
  b.max_age = s.duration("max_age", kNanosPerSecond).value_or(b.max_age);
  b.commit_interval = s.duration("commit_interval", kNanosPerMilli).value_or(b.commit_interval);
  if (b.commit_interval > 10 * kNanosPerSecond)
    s.fail("commit_interval", "must be at most 10s (QoS 1 acknowledgements wait for it)");
  if (auto n = s.integer("batch", 1, 100000)) b.batch = static_cast<size_t>(*n);
  const std::string sync = s.str("synchronous", "normal");
  if (sync != "normal" && sync != "full") s.fail("synchronous", "must be \"normal\" or \"full\"");
  b.synchronous_full = sync == "full";
  s.done();
}

/// The keys every sink has, read once here rather than by each sink.
ForwarderOptions readForward(Section& s) {
  ForwarderOptions f;
  if (auto n = s.integer("batch", 1, 100000)) f.batch = static_cast<size_t>(*n);
  f.retry_min = s.duration("retry_min", kNanosPerMilli).value_or(f.retry_min);
  f.retry_max = s.duration("retry_max", kNanosPerMilli).value_or(f.retry_max);
  if (f.retry_max < f.retry_min) s.fail("retry_max", "must not be below retry_min");
  return f;
}

void readMetrics(Section& s, MetricsConfig& m) {
  m.listen = s.requiredStr("listen");
  std::string error;
  const bool bracketed = m.listen.front() == '[';
  if ((bracketed && m.listen.find("]:") == std::string::npos) ||
      (!bracketed && std::count(m.listen.begin(), m.listen.end(), ':') != 1))
    s.fail("listen", bracketed ? "expected [IPv6]:PORT, e.g. \"[::1]:9108\""
                               : "expected ADDRESS:PORT, e.g. \"127.0.0.1:9108\"");
  auto hp = parseHostPort(m.listen, 0, error);
  if (!hp || hp->port == 0) s.fail("listen", "port must be 1..65535");
  if (!isNumericHost(hp->host))
    s.fail("listen", "the address must be numeric (127.0.0.1, 0.0.0.0, ::1)");
  m.host = hp->host;
  m.port = hp->port;
  s.done();
}

void readAggregate(Section& s, AggregateConfig& a) {
  a.enabled = s.boolean("enabled").value_or(true);
  aggregators::WindowOptions& w = a.windows;
  if (s.has("window")) {
    // One size ("10s") or several (["10s", "1m"]).
    const auto sizes = s.strings("window", /*single_ok=*/true);
    if (sizes->empty()) s.fail("window", "needs at least one window size");
    w.sizes.clear();
    for (size_t i = 0; i < sizes->size(); ++i) {
      const auto d = parseDuration((*sizes)[i]);
      if (!d || *d <= 0)
        s.failElement("window", i, "expected a duration such as \"10s\" or a list of them");
      if (*d < kNanosPerSecond) s.failElement("window", i, "must be at least 1s");
      if (std::find(w.sizes.begin(), w.sizes.end(), *d) != w.sizes.end())
        s.failElement("window", i, "window sizes must be distinct");
      w.sizes.push_back(*d);
    }
  }
  w.allowed_lateness = s.duration("allowed_lateness").value_or(w.allowed_lateness);
  if (auto stats = s.strings("stats")) {
    w.stats = aggregators::kDefaultStats;
    for (size_t i = 0; i < stats->size(); ++i) {
      const auto st = parseStat((*stats)[i]);
      if (!st)
        s.failElement(
            "stats", i,
            "entries must be count, min, max, avg, p95, sum, p50, p99, stddev, first or last");
      w.stats = static_cast<StatSet>(w.stats | *st);
    }
  }
  if (auto cap = s.integer("sample_cap", 1, 1 << 20))
    w.sample_cap = static_cast<std::uint32_t>(*cap);
  if (auto v = s.number("sketch_accuracy")) {
    if (!(*v >= 1e-4 && *v <= 0.5))
      s.fail("sketch_accuracy", "must be a number between 0.0001 and 0.5 (relative error)");
    w.sketch_alpha = *v;
  }
  if (auto why = aggregators::validate(w)) s.fail("window", *why);
  s.done();
}

void readRule(Section& s, alerts::Rule& r) {
  r.name = s.requiredStr("name");
  r.device = s.str("device", r.device);
  r.metric = s.str("metric", r.metric);
  if (auto tags = s.entries("tags"))
    for (auto& e : *tags) r.tags.push_back({std::move(e.key), std::move(e.text)});
  r.on = s.str("on", r.on);
  r.above = s.number("above");
  r.clear_below = s.number("clear_below");
  r.below = s.number("below");
  r.clear_above = s.number("clear_above");
  r.for_duration = s.duration("for").value_or(0);
  r.no_data_for = s.duration("no_data_for").value_or(0);
  r.severity = s.str("severity", r.severity);
  if (auto notify = s.strings("notify")) r.notify = std::move(*notify);
  r.min_retrigger = s.duration("min_retrigger").value_or(r.min_retrigger);
  s.done();
}

void readRules(Section& top, const AggregateConfig& aggregate, const NotifyConfig& notify,
               std::vector<alerts::Rule>& rules) {
  const std::vector<std::string> notifiers = notify.names();
  std::set<std::string> names;
  for (auto& s : top.tables("alert")) {
    alerts::Rule& r = rules.emplace_back();
    readRule(s, r);
    for (const alerts::RuleError& e :
         alerts::validate(r, std::span<const std::string>(notifiers))) {
      const auto dot = e.key.find('.');
      s.failAt(s.lineOf(e.key.substr(0, dot)), e.key, e.message);
    }
    if (!names.insert(r.name).second)
      s.fail("name", fmt::format("another [[alert]] is named '{}' already", r.name));
    if (r.on != "value" && r.no_data_for == 0) {
      const auto st = parseStat(r.on);
      if (!aggregate.enabled)
        s.fail("on", "a window statistic needs the windows ([aggregate] enabled)");
      if (st && !has(aggregate.windows.stats, *st))
        s.fail("on",
               fmt::format("the windows do not compute {}: add it to [aggregate] stats", r.on));
      if (!st)
        s.fail("on", fmt::format("the windows cannot compute {} (available: count, min, max, avg, "
                                 "p95, sum, p50, p99, stddev, first, last)",
                                 r.on));
    }
  }
}

void readNotify(Section& s, const std::string& gateway_id, NotifyConfig& n) {
  if (auto pd = s.table("pagerduty")) n.pagerduty = alerts::parsePagerDuty(*pd, gateway_id);
  if (auto hooks = s.table("webhook")) {
    for (const auto& name : hooks->keys()) {
      auto h = hooks->table(name);
      if (name == "pagerduty")
        hooks->fail(name, "the name pagerduty is taken by [notify.pagerduty]");
      n.webhooks.push_back(alerts::parseWebhook(*h, name));
    }
  }
  n.retry.initial = s.duration("retry_initial", kNanosPerMilli).value_or(n.retry.initial);
  n.retry.max = s.duration("retry_max", kNanosPerMilli).value_or(n.retry.max);
  if (n.retry.max < n.retry.initial) s.fail("retry_max", "must be at least retry_initial");
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
  Section top = Section::parseFile(file);

  if (auto s = top.table("gateway")) {
    readGateway(*s, cfg.gateway);
  } else {
    cfg.gateway.state_dir = "/var/lib/iot-gateway";
    cfg.gateway.control_socket = "/run/iot-gateway/control.sock";
  }
  const bool has_mqtt = top.has("mqtt");
  if (auto s = top.table("mqtt")) cfg.mqtt = mqtt::parseConfig(*s, cfg.gateway.id);
  if (auto s = top.table("clock")) readClock(*s, cfg.clock);
  if (auto s = top.table("buffer")) readBuffer(*s, cfg.buffer);
  if (auto s = top.table("kafka")) {
    cfg.kafka.emplace();
    cfg.kafka->forward = readForward(*s);
    cfg.kafka->options = kafka::parseConfig(*s, cfg.gateway.id);
  }
  if (auto s = top.table("timeseries")) {
    cfg.timeseries.emplace();
    cfg.timeseries->forward = readForward(*s);
    cfg.timeseries->options = timeseries::parseConfig(*s);
  }
  if (auto s = top.table("coap")) cfg.coap.emplace().source = coap::parseConfig(*s);
  if (auto s = top.table("metrics")) readMetrics(*s, cfg.metrics.emplace());
  if (auto s = top.table("aggregate")) readAggregate(*s, cfg.aggregate);
  if (auto s = top.table("notify")) readNotify(*s, cfg.gateway.id, cfg.notify);
  readRules(top, cfg.aggregate, cfg.notify, cfg.alerts);
  if (!has_mqtt && !cfg.coap)
    top.fail("mqtt",
             "a source is required: [mqtt] (with at least one [[mqtt.subscribe]]) or [coap]");
  top.done();
  return cfg;
}

}  // namespace gw::config
