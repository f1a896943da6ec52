#include "core/record_json.h"

#include <charconv>
#include <cmath>
#include <cstdint>

#include "core/json.h"
#include "core/time.h"
#include "core/window_stats.h"

namespace gw {
namespace {

void appendInt(std::string& out, std::int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

void appendUint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

// `{"device":…,"metric":…,"tags":{…}`: how every record value starts.
void appendSeriesFields(std::string& out, const InternedSeries& s) {
  out += "{\"device\":";
  json::appendString(out, s.device);
  out += ",\"metric\":";
  json::appendString(out, s.metric);
  out += ",\"tags\":";
  json::appendStringMap(out, s.tags);
}
}  // namespace

void appendReadingJson(std::string& out, const ReadingRecord& r) {
  appendSeriesFields(out, *r.series);
  out += ",\"value\":";
  json::appendNumber(out, r.value);
  out += ",\"time\":\"";
  appendRfc3339Millis(out, r.event_time);
  out += '"';
  if (r.device_time) {
    out += ",\"device_time\":\"";
    appendRfc3339Millis(out, *r.device_time);
    out += '"';
  }
  out += ",\"reference\":";
  json::appendString(out, toString(r.reference));
  if (r.device_time) {
    // Whole milliseconds, rounded: the times above have millisecond resolution too.
    out += ",\"offset_ms\":";
    appendInt(out, std::llround(static_cast<double>(r.event_time - *r.device_time) /
                                static_cast<double>(kNanosPerMilli)));
  }
  out += ",\"seq\":";
  appendUint(out, r.seq);
  out += '}';
}

void appendAggregateJson(std::string& out, const ReadingRecord& r) {
  const WindowStats& w = r.window;
  appendSeriesFields(out, *r.series);
  out += ",\"window\":";
  json::appendString(out, formatDuration(w.size));
  out += ",\"window_start\":\"";
  appendRfc3339Millis(out, w.start);
  out += "\",\"window_end\":\"";
  appendRfc3339Millis(out, w.start + w.size);
  out += '"';
  for (Stat st : kStatOrder) {
    if (!has(w.stats, st)) continue;
    out += ",\"";
    out += toString(st);
    out += "\":";
    if (st == Stat::kCount)
      appendUint(out, w.count);
    else
      json::appendNumber(out, w.get(st));
  }
  out += ",\"late\":";
  appendUint(out, w.late);
  if (w.quantiles != QuantileMode::kExact) out += ",\"quantiles\":\"sketch\"";
  out += ",\"seq\":";
  appendUint(out, r.seq);
  out += '}';
}

}  // namespace gw
