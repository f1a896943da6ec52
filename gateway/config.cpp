#include "gateway/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <set>
#include <span>

#include "core/host_port.h"
#include "gateway/registry.h"

namespace gw::config {
namespace {

namespace fs = std::filesystem;

void readGateway(Section& s, GatewayConfig& g) {
  g.id = s.str("id", g.id);
  if (g.id.empty()) s.fail("id", "must not be empty");
  g.state_dir = s.path("state_dir").value_or("/var/lib/iot-gateway");
  g.control_socket = s.path("control_socket").value_or("/run/iot-gateway/control.sock");
  g.stats_interval = s.duration("stats_interval", kNanosPerSecond).value_or(g.stats_interval);
  const std::string stats_format = s.str("stats_format", "short");
  if (stats_format != "short" && stats_format != "json")
    s.fail("stats_format", "must be \"short\" (one line to read) or \"json\" (for scripts)");
  g.stats_json = stats_format == "json";
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

// buffer.min_free: "256MiB" (a size), "5%" (of the filesystem, 1 to 50), 0 or "0" (off).
void readMinFree(Section& s, BufferConfig& b) {
  if (!s.has("min_free")) return;
  b.min_free = 0;
  b.min_free_percent = 0;
  if (!s.isString("min_free")) {  // bytes; 0 = off
    b.min_free = static_cast<std::uint64_t>(
        s.integer("min_free", 0, std::numeric_limits<std::int64_t>::max()).value_or(0));
    return;
  }
  const std::string v = *s.str("min_free");
  if (v == "0") return;
  if (!v.empty() && v.back() == '%') {
    unsigned pct = 0;
    const auto r = std::from_chars(v.data(), v.data() + v.size() - 1, pct);
    if (r.ec != std::errc() || r.ptr != v.data() + v.size() - 1 || pct < 1 || pct > 50)
      s.fail("min_free", "a percentage of the filesystem from 1% to 50%, e.g. \"5%\"");
    b.min_free_percent = pct;
    return;
  }
  b.min_free = *s.size("min_free");
}

void readBuffer(Section& s, BufferConfig& b) {
  b.max_size = s.size("max_size").value_or(b.max_size);
  if (b.max_size < (1u << 20)) s.fail("max_size", "must be at least 1MiB");
  b.max_age = s.duration("max_age", kNanosPerSecond).value_or(b.max_age);
  b.commit_interval = s.duration("commit_interval", kNanosPerMilli).value_or(b.commit_interval);
  if (b.commit_interval > 10 * kNanosPerSecond)
    s.fail("commit_interval", "must be at most 10s (QoS 1 acknowledgements wait for it)");
  if (auto n = s.integer("batch", 1, 100000)) b.batch = static_cast<size_t>(*n);
  // What each survives: buffer::Synchronous (and README, "Configuration").
  const std::string sync = s.str("synchronous", "full");
  if (sync == "full") {
    b.synchronous = buffer::Synchronous::kFull;
  } else if (sync == "normal") {
    b.synchronous = buffer::Synchronous::kNormal;
  } else if (sync == "off") {
    b.synchronous = buffer::Synchronous::kOff;
  } else {
    s.fail("synchronous", "must be \"full\", \"normal\" or \"off\"");
  }
  readMinFree(s, b);
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
  if (auto n = s.integer("per_device_limit", 0, 1'000'000)) m.per_device_limit = *n;
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

/// The tables of a config, opened once each (a table's read keys are tracked per Section, so
/// `[notify]` read by the gateway and `[notify.pagerduty]` by its component share one).
class Tables {
 public:
  explicit Tables(Section& top) { open_.emplace("", top); }

  /// The table at a dotted path, or nullptr when absent.
  Section* find(std::string_view dotted) {
    if (auto it = open_.find(std::string(dotted)); it != open_.end()) return &it->second;
    const auto dot = dotted.rfind('.');
    Section* parent = find(dot == std::string_view::npos ? "" : dotted.substr(0, dot));
    if (!parent) return nullptr;
    const std::string_view key = dot == std::string_view::npos ? dotted : dotted.substr(dot + 1);
    if (!parent->has(key)) return nullptr;
    auto t = parent->table(key);
    return &open_.emplace(std::string(dotted), std::move(*t)).first->second;
  }

  /// done() on every table opened, children first (so a child's unknown key is reported with
  /// its own name rather than as an unread parent key).
  void done() {
    for (auto it = open_.rbegin(); it != open_.rend(); ++it) it->second.done();
  }

 private:
  std::map<std::string, Section> open_;
};

void readNotifyRetry(Section& s, NotifyConfig& n) {
  n.retry.initial = s.duration("retry_initial", kNanosPerMilli).value_or(n.retry.initial);
  n.retry.max = s.duration("retry_max", kNanosPerMilli).value_or(n.retry.max);
  if (n.retry.max < n.retry.initial) s.fail("retry_max", "must be at least retry_initial");
}

/// Every registered component whose table is present: parsed in its own folder.
void readComponents(Tables& tables, Config& cfg) {
  std::set<std::string> notifier_names;
  for (const Component& c : builtinComponents()) {
    std::vector<std::pair<Section*, std::string>> instances;  // table, instance name
    if (c.named) {
      if (Section* parent = tables.find(c.table))
        for (const auto& name : parent->keys())
          instances.emplace_back(tables.find(fmt::format("{}.{}", c.table, name)), name);
    } else if (Section* t = tables.find(c.table)) {
      instances.emplace_back(t, "");
    }
    for (auto& [section, instance] : instances) {
      ParseContext context{cfg.gateway.id, instance};
      context.table = [&tables](std::string_view t) { return tables.find(t); };
      switch (c.kind) {
        case ComponentKind::kSource:
          cfg.sources.push_back(c.parse_source(*section, context));
          break;
        case ComponentKind::kSink: {
          SinkEntry entry;
          entry.forward = readForward(*section);
          entry.config = c.parse_sink(*section, context);
          cfg.sinks.push_back(std::move(entry));
          break;
        }
        case ComponentKind::kNotifier: {
          auto n = c.parse_sink(*section, context);
          const std::string name = n->name().substr(n->name().find('.') + 1);
          if (!notifier_names.insert(name).second)
            section->failAt(section->line(), "",
                            fmt::format("the notifier name {} is taken already", name));
          cfg.notify.notifiers.push_back(std::move(n));
          break;
        }
      }
    }
  }
}

}  // namespace

std::vector<std::string> NotifyConfig::names() const {
  std::vector<std::string> out;
  for (const auto& n : notifiers) out.push_back(n->name().substr(n->name().find('.') + 1));
  return out;
}

namespace {

Config loadSection(const fs::path& file, Section top) {
  Config cfg;
  cfg.file = file;
  Tables tables(top);

  if (Section* s = tables.find("gateway")) {
    readGateway(*s, cfg.gateway);
  } else {
    cfg.gateway.state_dir = "/var/lib/iot-gateway";
    cfg.gateway.control_socket = "/run/iot-gateway/control.sock";
  }
  if (Section* s = tables.find("clock")) readClock(*s, cfg.clock);
  if (Section* s = tables.find("buffer")) readBuffer(*s, cfg.buffer);
  if (Section* s = tables.find("metrics")) readMetrics(*s, cfg.metrics.emplace());
  if (Section* s = tables.find("aggregate")) readAggregate(*s, cfg.aggregate);
  if (Section* s = tables.find("notify")) readNotifyRetry(*s, cfg.notify);
  for (const Omitted& o : omittedComponents())
    if (top.has(o.table))
      top.fail(o.table, fmt::format("this gatewayd was built without it ({}=OFF)", o.option));
  readComponents(tables, cfg);
  readRules(top, cfg.aggregate, cfg.notify, cfg.alerts);
  readLimits(tables.find("limits"), top, cfg.alerts, cfg.limits);
  if (cfg.sources.empty())
    top.fail("mqtt",
             "a source is required: [mqtt] (with at least one [[mqtt.subscribe]]) or [coap]");
  tables.done();
  cfg.paths = top.paths();
  return cfg;
}

}  // namespace

Config load(const fs::path& file) { return loadSection(file, Section::parseFile(file)); }

Config load(const fs::path& file, std::string_view text) {
  return loadSection(file, Section::parse(text, file));
}

}  // namespace gw::config
