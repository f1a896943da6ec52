// Fuzz target for the record writers: a random series, value and times are written as the
// JSON value every JSON sink sends (core/record_json.h) and as a line of InfluxDB line protocol
// (protocols/timeseries, appendLineProtocol); the output is read back by independent checkers.
// The JSON must parse (simdjson) and give back the same strings and numbers; the line must be one
// line whose escapes hold: unescaping it gives back the measurement, tags, fields and time.
//
// Input: 33 bytes of header (flags, value, event time, device time, seq; short inputs are
// zero-padded), then NUL-separated strings: device, metric, then tag key/value pairs.
#include <simdjson.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/record_json.h"
#include "core/window_stats.h"
#include "protocols/timeseries/timeseries_sink.h"
#include "tests/fuzz/fuzz_check.h"

using gw::fuzz::require;

namespace {

template <typename T>
T take(std::string_view& in) {
  unsigned char buf[sizeof(T)] = {};
  const size_t n = std::min(in.size(), sizeof(T));
  std::memcpy(buf, in.data(), n);
  in.remove_prefix(n);
  T v;
  std::memcpy(&v, buf, sizeof(T));
  return v;
}

bool validUtf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

// ---- JSON ------------------------------------------------------------------------------------

void checkJson(const std::string& text, const gw::ReadingRecord& r) {
  static simdjson::dom::parser parser;
  const gw::InternedSeries& s = *r.series;
  bool utf8 = validUtf8(s.device) && validUtf8(s.metric);
  for (const auto& [k, v] : s.tags) utf8 = utf8 && validUtf8(k) && validUtf8(v);
  simdjson::dom::element doc;
  const auto error = parser.parse(text).get(doc);
  // Strings are passed through as bytes: only valid UTF-8 in gives valid JSON out.
  if (!utf8) return;
  if (error) {
    std::fprintf(stderr, "JSON: %s\n%s\n", simdjson::error_message(error), text.c_str());
    require(false, "the JSON parses");
  }
  std::string_view str;
  require(doc["device"].get(str) == simdjson::SUCCESS && str == s.device, "device");
  require(doc["metric"].get(str) == simdjson::SUCCESS && str == s.metric, "metric");
  simdjson::dom::object tags;
  require(doc["tags"].get(tags) == simdjson::SUCCESS, "tags is an object");
  size_t i = 0;
  for (const auto field : tags) {  // in order, duplicates kept
    require(i < s.tags.size() && field.key == s.tags[i].first, "tag key");
    require(field.value.get(str) == simdjson::SUCCESS && str == s.tags[i].second, "tag value");
    ++i;
  }
  require(i == s.tags.size(), "every tag");
  std::uint64_t seq = 0;
  require(doc["seq"].get(seq) == simdjson::SUCCESS && seq == r.seq, "seq");
  if (r.kind == gw::RecordKind::kReading) {
    double v = 0;
    if (std::isfinite(r.value)) {
      require(doc["value"].get(v) == simdjson::SUCCESS && v == r.value, "value round trip");
    } else {
      require(doc["value"].is_null(), "a non-finite value is null");
    }
    require(doc["time"].get(str) == simdjson::SUCCESS, "time");
    require((doc["device_time"].error() == simdjson::SUCCESS) == r.device_time.has_value(),
            "device_time when there is one");
  } else {
    std::uint64_t n = 0;
    require(doc["count"].get(n) == simdjson::SUCCESS && n == r.window.count, "count");
    require(doc["late"].get(n) == simdjson::SUCCESS && n == r.window.late, "late");
    require(doc["window"].get(str) == simdjson::SUCCESS, "window");
  }
}

// ---- line protocol ---------------------------------------------------------------------------

// Reads one escaped token up to an unescaped delimiter; false on an escape the writer never
// makes (a lone backslash, or a newline anywhere).
bool readToken(std::string_view& line, std::string_view delims, bool equals_escaped,
               std::string& out) {
  out.clear();
  while (!line.empty()) {
    const char c = line.front();
    if (c == '\n' || c == '\r') return false;
    if (delims.find(c) != std::string_view::npos) return true;
    if (c == '\\') {
      if (line.size() < 2) return false;
      const char e = line[1];
      if (!(e == '\\' || e == ',' || e == ' ' || (equals_escaped && e == '='))) return false;
      out += e;
      line.remove_prefix(2);
      continue;
    }
    if (c == '=' && equals_escaped) return true;
    out += c;
    line.remove_prefix(1);
  }
  return true;
}

std::string lineName(std::string_view s) {  // what the writer promises for CR and LF
  std::string out(s);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

void failLine(const std::string& line, const char* what) {
  std::fprintf(stderr, "line protocol: %s\n", line.c_str());
  require(false, what);
}

void checkLine(const std::string& text, const gw::ReadingRecord& r) {
  const gw::InternedSeries& s = *r.series;
  const bool skipped = s.metric.empty() || s.metric.front() == '#' ||
                       (r.kind == gw::RecordKind::kReading && !std::isfinite(r.value));
  if (skipped) {
    require(text.empty(), "a record that cannot be written appends nothing");
    return;
  }
  if (text.empty() || text.back() != '\n') failLine(text, "one line ending in a newline");
  std::string_view line(text.data(), text.size() - 1);
  if (line.find('\n') != std::string_view::npos) failLine(text, "one line");
  std::string tok;
  // Measurement: up to an unescaped comma or space; '=' is not escaped there.
  if (!readToken(line, ", ", false, tok)) failLine(text, "measurement escapes");
  std::string measurement = lineName(s.metric);
  if (r.kind == gw::RecordKind::kAggregate) measurement += "_" + gw::formatDuration(r.window.size);
  if (tok != measurement) failLine(text, "measurement round trip");
  // Tags: device first, then the template's, empty ones and a `device` tag left out.
  std::vector<std::pair<std::string, std::string>> expected;
  if (!s.device.empty()) expected.emplace_back("device", lineName(s.device));
  for (const auto& [k, v] : s.tags) {
    if (!k.empty() && !v.empty() && k != "device") expected.emplace_back(lineName(k), lineName(v));
  }
  size_t i = 0;
  while (!line.empty() && line.front() == ',') {
    line.remove_prefix(1);
    std::string key, value;
    if (!readToken(line, ",= ", true, key) || line.empty() || line.front() != '=')
      failLine(text, "tag key");
    line.remove_prefix(1);
    if (!readToken(line, ", ", true, value)) failLine(text, "tag value");
    if (key.empty() || value.empty()) failLine(text, "tags are not empty");
    if (i >= expected.size() || expected[i] != std::make_pair(key, value))
      failLine(text, "tag round trip");
    ++i;
  }
  if (i != expected.size()) failLine(text, "every tag");
  if (line.empty() || line.front() != ' ') failLine(text, "a space before the fields");
  line.remove_prefix(1);
  // Fields: key=number[i] pairs, then a space and the time.
  const size_t space = line.rfind(' ');
  if (space == std::string_view::npos) failLine(text, "a time");
  const std::string fields(line.substr(0, space));
  const std::string time(line.substr(space + 1));
  char* end = nullptr;
  const long long t = std::strtoll(time.c_str(), &end, 10);
  const gw::Nanos want_time = r.kind == gw::RecordKind::kReading ? r.event_time : r.window.start;
  if (*end != '\0' || t != want_time) failLine(text, "time round trip");
  std::string_view f = fields;
  size_t n = 0;
  while (true) {
    std::string key;
    if (!readToken(f, "= ,", true, key) || f.empty() || f.front() != '=') {
      failLine(text, "field key");
    }
    f.remove_prefix(1);
    const size_t comma = f.find(',');
    const std::string number(f.substr(0, comma));
    f.remove_prefix(comma == std::string_view::npos ? f.size() : comma);
    if (number.empty()) failLine(text, "a field value");
    if (r.kind == gw::RecordKind::kReading) {
      const double v = std::strtod(number.c_str(), &end);
      if (key != "value" || *end != '\0' || v != r.value) failLine(text, "value round trip");
    } else if (key == "count" || key == "late") {
      const unsigned long long v = std::strtoull(number.c_str(), &end, 10);
      if (std::string_view(end) != "i") failLine(text, "an integer field");
      if (v != (key == "count" ? r.window.count : r.window.late)) failLine(text, key.c_str());
    } else {
      const auto st = gw::parseStat(key);
      const double v = std::strtod(number.c_str(), &end);
      if (!st || *end != '\0' || v != r.window.get(*st)) failLine(text, "statistic round trip");
    }
    ++n;
    if (f.empty()) break;
    f.remove_prefix(1);  // ','
  }
  if (r.kind == gw::RecordKind::kReading && n != 1) failLine(text, "one field");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto flags = take<std::uint8_t>(in);
  const auto value = take<double>(in);
  // Times as the pipeline has them: the clock stage never produces one before 1970, and device
  // times before 1970 are refused by the decoders.
  const auto event_time = take<std::int64_t>(in) & INT64_MAX;
  const auto device_time = take<std::int64_t>(in) & INT64_MAX;
  const auto seq = take<std::uint64_t>(in);

  gw::Series series;
  std::vector<std::string> parts;
  for (size_t start = 0; start <= in.size() && parts.size() < 2 + 2 * 8;) {
    const size_t nul = in.find('\0', start);
    parts.emplace_back(in.substr(start, nul == std::string_view::npos ? nul : nul - start));
    if (nul == std::string_view::npos) break;
    start = nul + 1;
  }
  parts.resize(std::max<size_t>(parts.size(), 2));
  series.device = parts[0];
  series.metric = parts[1];
  for (size_t i = 2; i + 1 < parts.size(); i += 2) series.tags.emplace_back(parts[i], parts[i + 1]);

  const gw::InternedSeries interned(series);
  gw::ReadingRecord r;
  r.series = &interned;
  r.seq = seq;
  r.value = value;
  r.event_time = event_time;
  if (flags & 1) r.device_time = device_time;
  r.reference = (flags & 2) ? gw::TimeReference::kBroker : gw::TimeReference::kReceive;
  if (flags & 4) {
    r.kind = gw::RecordKind::kAggregate;
    gw::WindowStats& w = r.window;
    // A window of 1 ms .. ~1 day, starting at or after 1970 and ending before 2262.
    w.size = (static_cast<gw::Nanos>(device_time % 86'400'000) + 1) * gw::kNanosPerMilli;
    w.start = event_time % (INT64_MAX - 86'400'000LL * gw::kNanosPerMilli);
    w.count = seq;
    w.late = seq >> 17;
    w.stats = static_cast<gw::StatSet>(gw::kDefaultStats | (device_time >> 24 & gw::kAllStats));
    w.quantiles = (flags & 8) ? gw::QuantileMode::kSketch : gw::QuantileMode::kExact;
    double v = value;
    for (gw::Stat st : gw::kStatOrder) {
      if (st == gw::Stat::kCount) continue;
      w.set(st, v);
      v = v * -1.5 + 0.25;  // different values per statistic, some overflowing to inf
    }
  }

  std::string json;
  if (r.kind == gw::RecordKind::kReading) {
    gw::appendReadingJson(json, r);
  } else {
    gw::appendAggregateJson(json, r);
  }
  checkJson(json, r);
  std::string line;
  gw::timeseries::appendLineProtocol(line, r);
  checkLine(line, r);
  return 0;
}
