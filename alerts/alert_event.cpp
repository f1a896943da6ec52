#include "alerts/alert_event.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include "core/json.h"

namespace gw::alerts {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

// Percent-escapes what would make the key ambiguous or unreadable in PagerDuty's UI.
void appendKeyPart(std::string& out, std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '%' || c == '/' || c == ',' || c == '=') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
}

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

void appendTags(std::string& out, const Series& s) { json::appendStringMap(out, s.tags); }

}  // namespace

const char* toString(AlertState s) { return s == AlertState::kFiring ? "firing" : "resolved"; }

std::string dedupKey(std::string_view gateway_id, std::string_view rule, const Series& series) {
  std::string key;
  key.reserve(64);
  appendKeyPart(key, gateway_id);
  key += '/';
  appendKeyPart(key, rule);
  key += '/';
  appendKeyPart(key, series.device);
  key += '/';
  appendKeyPart(key, series.metric);
  key += '/';
  // Sorted, so a template that lists the same tags in another order keeps its keys.
  std::vector<const std::pair<std::string, std::string>*> tags;
  for (const auto& t : series.tags) tags.push_back(&t);
  std::sort(tags.begin(), tags.end(), [](auto* a, auto* b) { return *a < *b; });
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (i > 0) key += ',';
    appendKeyPart(key, tags[i]->first);
    key += '=';
    appendKeyPart(key, tags[i]->second);
  }
  if (key.size() <= kMaxDedupKey) return key;
  const std::string hash = fmt::format("~{:016x}", fnv1a64(key));
  key.resize(kMaxDedupKey - hash.size());
  // Do not end inside a %XX escape: cut back to before it.
  for (std::size_t back = 1; back <= 2 && back <= key.size(); ++back) {
    if (key[key.size() - back] == '%') {
      key.resize(key.size() - back);
      break;
    }
  }
  key += hash;
  return key;
}

void appendAlertJson(std::string& out, const AlertEvent& e) {
  out += "{\"rule\":";
  json::appendString(out, e.rule);
  out += ",\"device\":";
  json::appendString(out, e.series.device);
  out += ",\"metric\":";
  json::appendString(out, e.series.metric);
  out += ",\"tags\":";
  appendTags(out, e.series);
  out += ",\"state\":\"";
  out += toString(e.state);
  out += "\",\"severity\":\"";
  out += toString(e.severity);
  out += "\",\"statistic\":";
  json::appendString(out, e.statistic);
  out += ",\"value\":";
  json::appendNumber(out, e.value);
  out += ",\"threshold\":";
  json::appendNumber(out, e.threshold);
  out += ",\"time\":\"";
  appendRfc3339Millis(out, e.time);
  out += "\",\"dedup_key\":";
  json::appendString(out, e.dedup_key);
  out += '}';
}

std::string alertJson(const AlertEvent& e) {
  std::string out;
  appendAlertJson(out, e);
  return out;
}

void appendOutboxJson(std::string& out, const AlertEvent& e) {
  appendAlertJson(out, e);
  out.pop_back();  // '}'
  fmt::format_to(std::back_inserter(out), ",\"time_ns\":{},\"window_ns\":{},\"notify\":[", e.time,
                 e.window);
  for (size_t i = 0; i < e.notify.size(); ++i) {
    if (i > 0) out += ',';
    json::appendString(out, e.notify[i]);
  }
  out += "]}";
}

std::optional<AlertEvent> parseAlertJson(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<AlertEvent> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(text.data(), text.size()).get(doc); err)
    return fail(fmt::format("not JSON: {}", simdjson::error_message(err)));
  if (!doc.is_object()) return fail("not a JSON object");

  AlertEvent e;
  auto str = [&](const char* key, std::string& dst) {
    std::string_view v;
    if (doc[key].get_string().get(v)) return false;
    dst.assign(v);
    return true;
  };
  auto num = [&](const char* key, double& dst) {
    simdjson::dom::element el;
    if (doc[key].get(el)) return false;
    if (el.is_null()) {
      dst = std::numeric_limits<double>::quiet_NaN();  // appendNumber writes NaN as null
      return true;
    }
    return !el.get_double().get(dst);
  };
  std::string state, severity, time;
  if (!str("rule", e.rule) || !str("device", e.series.device) || !str("metric", e.series.metric) ||
      !str("state", state) || !str("severity", severity) || !str("statistic", e.statistic) ||
      !num("value", e.value) || !num("threshold", e.threshold) || !str("dedup_key", e.dedup_key))
    return fail("a required field is missing or has the wrong type");
  if (state == "firing") {
    e.state = AlertState::kFiring;
  } else if (state == "resolved") {
    e.state = AlertState::kResolved;
  } else {
    return fail(fmt::format("unknown state \"{}\"", state));
  }
  const auto sev = parseSeverity(severity);
  if (!sev) return fail(fmt::format("unknown severity \"{}\"", severity));
  e.severity = *sev;

  simdjson::dom::array notify;
  if (!doc["notify"].get_array().get(notify)) {
    for (auto n : notify) {
      std::string_view sv;
      if (n.get_string().get(sv)) return fail("a \"notify\" entry is not a string");
      e.notify.emplace_back(sv);
    }
  }

  simdjson::dom::object tags;
  if (doc["tags"].get_object().get(tags)) return fail("\"tags\" is missing or not an object");
  for (auto [k, v] : tags) {
    std::string_view sv;
    if (v.get_string().get(sv)) return fail("a tag value is not a string");
    e.series.tags.emplace_back(std::string(k), std::string(sv));
  }

  std::int64_t ns = 0;
  if (!doc["time_ns"].get_int64().get(ns)) {
    e.time = ns;
  } else {
    if (!str("time", time)) return fail("\"time\" is missing");
    const auto t = parseRfc3339(time);
    if (!t) return fail(fmt::format("\"time\" is not RFC 3339: {}", time));
    e.time = *t;
  }
  if (!doc["window_ns"].get_int64().get(ns)) e.window = ns;
  return e;
}

std::string summary(const AlertEvent& e) {
  std::string s;
  if (e.state == AlertState::kResolved) s += "resolved: ";
  s += e.rule;
  s += ": ";
  s += e.series.device;
  s += ' ';
  s += e.series.metric;
  if (!e.series.tags.empty()) {
    s += " [";
    for (std::size_t i = 0; i < e.series.tags.size(); ++i) {
      if (i > 0) s += ' ';
      s += e.series.tags[i].first;
      s += '=';
      s += e.series.tags[i].second;
    }
    s += ']';
  }
  if (e.statistic == kNoDataStatistic) {
    const auto secs = [](double v) {
      return formatDuration(static_cast<Nanos>(v * kNanosPerSecond));
    };
    if (e.state == AlertState::kFiring) {
      fmt::format_to(std::back_inserter(s), " silent for {} (no_data_for {})", secs(e.value),
                     secs(e.threshold));
    } else {
      fmt::format_to(std::back_inserter(s), " reporting again after {} of silence", secs(e.value));
    }
    return s;
  }
  // The comparison that held: a firing above-rule has value > threshold, a resolved one
  // value < clear threshold; and the mirror for below-rules. Equal values cannot occur.
  if (e.statistic != "value") {
    s += ' ';
    s += e.statistic;
    if (e.window > 0) fmt::format_to(std::back_inserter(s), " ({})", formatDuration(e.window));
  }
  fmt::format_to(std::back_inserter(s), " {} {} {}", e.value, e.value > e.threshold ? '>' : '<',
                 e.threshold);
  return s;
}

}  // namespace gw::alerts
