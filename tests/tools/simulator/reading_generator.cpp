#include "tests/tools/simulator/reading_generator.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "core/json.h"

namespace gw::sim {

namespace {

struct KnownMetric {
  std::string_view name;
  double lo;
  double hi;
};

constexpr KnownMetric kKnownMetrics[] = {
    {"bearing_temp", 40, 90},  // °C
    {"vibration", 0.5, 12},    // mm/s RMS
    {"pressure", 1, 8},        // bar
    {"current", 2, 40},        // A
    {"flow", 0, 120},          // m3/h
    {"humidity", 10, 90},      // %
};

constexpr std::size_t kLargePayloadBytes = 10 * 1024 * 1024;

// Two decimals, as a real transmitter would send; the result's shortest form is e.g. "21.53".
double roundCenti(double v) { return std::round(v * 100.0) / 100.0; }

// Uniform in [0, 1) from the top 53 bits: portable, unlike std::*_distribution.
double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

std::optional<PayloadFormat> parsePayloadFormat(std::string_view s) {
  if (s == "json") return PayloadFormat::kJson;
  if (s == "value") return PayloadFormat::kValue;
  if (s == "fields") return PayloadFormat::kFields;
  return std::nullopt;
}

MetricSpec metricSpecFor(std::string_view name) {
  for (const auto& k : kKnownMetrics) {
    if (k.name == name) return {std::string(name), k.lo, k.hi};
  }
  return {std::string(name), 0, 100};
}

std::optional<std::string> checkTopicLevel(std::string_view level) {
  if (level.empty()) return "is empty";
  for (char c : level) {
    if (c == '/' || c == '+' || c == '#') return fmt::format("contains '{}'", c);
    if (c == '\0') return "contains a NUL character";
  }
  return std::nullopt;
}

void appendShortest(std::string& out, double v) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

ReadingGenerator::ReadingGenerator(GeneratorOptions opts)
    : opts_(std::move(opts)), rng_(opts_.seed) {
  if (opts_.devices < 0) throw std::invalid_argument("--devices must be >= 0");
  if (opts_.lines < 1) throw std::invalid_argument("--lines must be >= 1");
  if (opts_.metrics.empty()) throw std::invalid_argument("--metrics must name at least one metric");
  for (const auto& m : opts_.metrics) {
    if (auto err = checkTopicLevel(m)) throw std::invalid_argument("metric '" + m + "' " + *err);
    metrics_.push_back(metricSpecFor(m));
  }
  // Placeholders must be known; checked once here so topicFor() can substitute blindly.
  for (std::size_t i = opts_.topic_template.find('{'); i != std::string::npos;
       i = opts_.topic_template.find('{', i + 1)) {
    const auto end = opts_.topic_template.find('}', i);
    const auto name = std::string_view(opts_.topic_template).substr(i + 1, end - i - 1);
    if (end == std::string::npos || (name != "line" && name != "device" && name != "metric")) {
      throw std::invalid_argument("--topic-template: unknown placeholder in '" +
                                  opts_.topic_template + "' (use {line}, {device}, {metric})");
    }
  }
  if (opts_.topic_template.find("{device}") == std::string::npos) {
    throw std::invalid_argument("--topic-template must contain {device}");
  }
  const int digits = std::max(3, static_cast<int>(std::to_string(opts_.devices).size()));
  const int total = opts_.devices + (opts_.odd_device.empty() ? 0 : 1);
  for (int d = 0; d < total; ++d) {
    Device dev;
    dev.name = d < opts_.devices ? fmt::format("{}{:0{}}", opts_.device_prefix, d + 1, digits)
                                 : opts_.odd_device;
    dev.line = fmt::format("line{}", d % opts_.lines + 1);
    if (auto err = checkTopicLevel(dev.name)) {
      throw std::invalid_argument("device name '" + dev.name + "' " + *err +
                                  " ('/', '+' and '#' cannot be part of an MQTT topic level)");
    }
    devices_.push_back(std::move(dev));
  }
  if (devices_.empty()) throw std::invalid_argument("no devices to simulate");
  resolveClocks();
  state_.reserve(devices_.size() * metrics_.size());
  for (std::size_t d = 0; d < devices_.size(); ++d) {
    for (const auto& m : metrics_) state_.push_back(m.lo + (m.hi - m.lo) * unit(rng_));
  }
}

std::string ReadingGenerator::topicFor(const Device& d, std::string_view metric) const {
  std::string out;
  const std::string& t = opts_.topic_template;
  for (std::size_t i = 0; i < t.size();) {
    if (t[i] == '{') {
      const auto end = t.find('}', i);
      const auto name = std::string_view(t).substr(i + 1, end - i - 1);
      out += name == "line"     ? std::string_view(d.line)
             : name == "device" ? std::string_view(d.name)
                                : metric;
      i = end + 1;
    } else {
      out.push_back(t[i++]);
    }
  }
  return out;
}

double ReadingGenerator::step(std::size_t device, std::size_t metric) {
  const auto& spec = metrics_[metric];
  double& v = state_[device * metrics_.size() + metric];
  const double span = spec.hi - spec.lo;
  v += (unit(rng_) * 2.0 - 1.0) * 0.02 * span;
  if (v > spec.hi) v = 2 * spec.hi - v;  // reflect at the bounds
  if (v < spec.lo) v = 2 * spec.lo - v;
  v = std::clamp(v, spec.lo, spec.hi);
  return roundCenti(v);
}

void ReadingGenerator::resolveClocks() {
  clocks_.assign(devices_.size(), ClockSpec{});
  std::vector<bool> named(devices_.size(), false);
  const ClockSpec* others = nullptr;
  for (const auto& a : opts_.clocks) {
    if (a.device == "*") {
      if (others) throw std::invalid_argument("--clock: '*' given twice");
      others = &a.spec;
      continue;
    }
    const auto it = std::find_if(devices_.begin(), devices_.end(),
                                 [&](const Device& d) { return d.name == a.device; });
    if (it == devices_.end()) {
      throw std::invalid_argument(
          fmt::format("--clock: no device named '{}' (devices are {} .. {})", a.device,
                      devices_.front().name, devices_.back().name));
    }
    const auto d = static_cast<std::size_t>(it - devices_.begin());
    if (named[d]) throw std::invalid_argument("--clock: device '" + a.device + "' given twice");
    named[d] = true;
    clocks_[d] = a.spec;
  }
  if (others) {
    for (std::size_t d = 0; d < devices_.size(); ++d) {
      if (!named[d]) clocks_[d] = *others;
    }
  }
}

std::int64_t ReadingGenerator::deviceMillis(std::size_t device, Nanos true_ns) const {
  const ClockSpec& c = clocks_[device];
  return floorMillis(c.exact() ? true_ns : deviceTime(c, run_start_, true_ns));
}

SimMessage ReadingGenerator::next(std::int64_t ts_ms) {
  SimMessage m = make(ts_ms);
  m.true_ns = ts_ms * kNanosPerMilli;
  return m;
}

SimMessage ReadingGenerator::nextAt(Nanos true_ns) {
  SimMessage m = make(deviceMillis(next_device_, true_ns));
  m.true_ns = true_ns;
  return m;
}

SimMessage ReadingGenerator::make(std::int64_t ts_ms) {
  SimMessage m;
  m.ts_ms = ts_ms;
  const std::size_t d = next_device_;
  m.device = d;
  const Device& dev = devices_[d];
  std::string& p = m.payload;
  if (opts_.format == PayloadFormat::kFields) {
    m.topic = topicFor(dev, "state");
    p.push_back('{');
    for (std::size_t i = 0; i < metrics_.size(); ++i) {
      const double v = step(d, i);
      m.fields.push_back({i, v});
      if (i) p.push_back(',');
      json::appendString(p, metrics_[i].name);
      p.push_back(':');
      appendShortest(p, v);
    }
    if (opts_.timestamp) fmt::format_to(std::back_inserter(p), ",\"ts\":{}", ts_ms);
    p.push_back('}');
    next_device_ = (next_device_ + 1) % devices_.size();
    return m;
  }
  const std::size_t i = next_metric_;
  const double v = step(d, i);
  m.fields.push_back({i, v});
  m.topic = topicFor(dev, metrics_[i].name);
  if (opts_.format == PayloadFormat::kValue) {
    appendShortest(p, v);
  } else {
    p += "{\"value\":";
    appendShortest(p, v);
    if (opts_.timestamp) fmt::format_to(std::back_inserter(p), ",\"ts\":{}", ts_ms);
    p.push_back('}');
  }
  if (++next_metric_ == metrics_.size()) {
    next_metric_ = 0;
    next_device_ = (next_device_ + 1) % devices_.size();
  }
  return m;
}

std::vector<SimMessage> ReadingGenerator::badInputs(std::int64_t ts_ms) const {
  const Device& dev = devices_.front();
  const bool fields = opts_.format == PayloadFormat::kFields;
  const bool value = opts_.format == PayloadFormat::kValue;
  const std::string topic = topicFor(dev, fields ? "state" : metrics_.front().name);
  // In a JSON object the bad value sits where the decoder looks for the number.
  const std::string key = fields ? metrics_.front().name : "value";
  const auto wrap = [&](std::string_view v) {
    std::string s = "{";
    json::appendString(s, key);
    s += ':';
    s += v;
    if (opts_.timestamp) fmt::format_to(std::back_inserter(s), ",\"ts\":{}", ts_ms);
    s += '}';
    return s;
  };
  std::vector<SimMessage> out;
  const auto add = [&](std::string reason, std::string t, std::string payload, bool known) {
    SimMessage m;
    m.topic = std::move(t);
    m.payload = std::move(payload);
    m.ts_ms = ts_ms;
    if (known) m.device = 0;
    m.bad = std::move(reason);
    out.push_back(std::move(m));
  };
  add("not_json", topic, "not json", true);
  add("not_number", topic, value ? "hot" : wrap("\"hot\""), true);
  add("nan", topic, value ? "NaN" : wrap("NaN"), true);
  std::string big = value ? "1.5" : wrap("1.5");
  if (!value) big.pop_back();  // reopen the object to pad it with a string field
  if (!value) big += ",\"pad\":\"";
  big.resize(kLargePayloadBytes - (value ? 0 : 2), value ? ' ' : 'x');
  if (!value) big += "\"}";
  add("too_large", topic, std::move(big), true);
  // The first literal level of the template, so the topic sits in the subscribed tree.
  const auto& t = opts_.topic_template;
  std::string root = t.substr(0, t.find('/'));
  if (root.find('{') != std::string::npos) root = "plant1";
  add("unknown_topic", root + "/unknown", value ? "1.5" : wrap("1.5"), false);
  return out;
}

void ReadingGenerator::appendRecords(std::string& out, const SimMessage& m) const {
  const auto head = [&](std::optional<std::size_t> metric) {
    out += "{\"topic\":";
    json::appendString(out, m.topic);
    out += ",\"device\":";
    if (m.device) {
      json::appendString(out, devices_[*m.device].name);
      out += ",\"line\":";
      json::appendString(out, devices_[*m.device].line);
    } else {
      out += "null,\"line\":null";
    }
    out += ",\"metric\":";
    if (metric) {
      json::appendString(out, metrics_[*metric].name);
    } else {
      out += "null";
    }
  };
  // Exact decimal ms with µs: a double of epoch ns would lose the last digits.
  const auto millis = [&](Nanos t) {
    if (t < 0) {
      out.push_back('-');
      t = -t;
    }
    fmt::format_to(std::back_inserter(out), "{}.{:03}", t / kNanosPerMilli,
                   t % kNanosPerMilli / kNanosPerMicro);
  };
  const auto times = [&] {
    out += ",\"true_ts\":";
    millis(m.true_ns);
    if (m.delay_ns) {
      out += ",\"delay_ms\":";
      millis(*m.delay_ns);
    }
  };
  if (!m.bad.empty()) {
    head(m.device ? std::optional<std::size_t>(0) : std::nullopt);
    fmt::format_to(std::back_inserter(out), ",\"value\":null,\"ts\":{}", m.ts_ms);
    times();
    out += ",\"bad\":";
    json::appendString(out, m.bad);
    out += "}\n";
    return;
  }
  for (const auto& f : m.fields) {
    head(f.metric);
    out += ",\"value\":";
    appendShortest(out, f.value);
    fmt::format_to(std::back_inserter(out), ",\"ts\":{}", m.ts_ms);
    times();
    out += "}\n";
  }
}

}  // namespace gw::sim
