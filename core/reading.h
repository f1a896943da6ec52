// The unit of data in the pipeline (design: "Data flow").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/time.h"
#include "core/window_stats.h"

namespace gw {

/// Which clock an event time was derived from. The journal stores the value as is: add values,
/// never renumber them.
enum class TimeReference : std::uint8_t {
  kReceive = 0,  ///< the gateway's own receive time
  kBroker = 1,   ///< a broker timestamp (MQTT v5 user property)
};

const char* toString(TimeReference r);

/// A series' tags: (key, value) in the template's order.
using Tags = std::vector<std::pair<std::string, std::string>>;

/// A time series: (device, metric) plus tags captured from a topic or path template.
/// Tags keep the template's order, so equal templates give equal series.
struct Series {
  std::string device;
  std::string metric;
  Tags tags;

  bool operator==(const Series&) const = default;
};

/// A series as the journal's series table keeps it (issue 13: bytes per series): its own
/// device name, and its metric and tag set by reference to one copy shared by every series
/// with the same ones (a plant's 100,000 series have a handful of metrics and tag sets). It is
/// read like a Series: `device`, `metric` and `tags` have a Series' types. 48 bytes instead of
/// a Series' 88 plus its tag vector on the heap.
struct InternedSeries {
  std::string device;
  const std::string& metric;
  const Tags& tags;

  /// Refers to `s`'s metric and tags (which must outlive it) and copies its device.
  explicit InternedSeries(const Series& s) : device(s.device), metric(s.metric), tags(s.tags) {}
  InternedSeries(std::string d, const std::string& m, const Tags& t)
      : device(std::move(d)), metric(m), tags(t) {}

  /// A copy that owns everything (for events that outlive the table, or a lookup by value).
  Series toSeries() const { return Series{device, metric, tags}; }
};

bool operator==(const InternedSeries& a, const Series& b);
bool operator==(const InternedSeries& a, const InternedSeries& b);

/// Equal for a Series and an InternedSeries of the same contents.
struct SeriesHash {
  size_t operator()(const Series& s) const noexcept;
  size_t operator()(const InternedSeries& s) const noexcept;
};

/// One measured value as a source produced it and the clock stage corrected it.
struct Reading {
  Series series;
  double value = 0;
  std::optional<Nanos> device_time;  ///< the device's own timestamp, if the payload had one
  Nanos reference_time = 0;          ///< broker stamp or receive time (see `reference`)
  Nanos receive_time = 0;            ///< when the gateway got it
  Nanos event_time = 0;              ///< the corrected instant of the measurement
  TimeReference reference = TimeReference::kReceive;
};

struct DecodedValue {
  std::string_view metric;  ///< empty for kJson/kValue (the metric comes from the template)
  double value = 0;
};

/// The timestamp field (a dotted path like the value) holds, for s/ms/us/ns, a JSON number or a
/// string holding one: plain decimals convert exactly (rounded to the ns), exponent forms go
/// through a double. For rfc3339 it is a string (`Z` or `±hh:mm`, years 1678..2261). A missing
/// field or null gives no device time; anything else unreadable (a bool, an object, a number for
/// rfc3339, a value outside int64 ns, a time before 1970) gives no device time and
/// `bad_timestamp`; the values are kept.
/// One decoded message: the values a source found in one payload, and the device time.
struct Decoded {
  std::optional<Nanos> device_time;
  bool bad_timestamp = false;  ///< the timestamp field was present but unreadable
  /// The device time is of a stored, historical value (Sparkplug is_historical): it is the
  /// event time as is and is not a clock sample.
  bool historical = false;
  std::vector<DecodedValue> values;  ///< empty when decode() returned an error
};

/// Identifies a series inside one journal; stable for the journal's life.
using SeriesId = std::uint32_t;

/// What a journal record is (design: "Data flow": readings, aggregates and alerts are all
/// journal records, forwarded the same way).
enum class RecordKind : std::uint8_t {
  kReading,    ///< value, event_time, device_time, reference
  kAggregate,  ///< window (event_time = window start, value = NaN)
  kAlert,      ///< alert (event_time = the transition's time, value = its value)
};

/// A committed record as read back from the journal for a sink. `series` points into the
/// journal's series table: an entry of an id below the journal's pinned_series never moves or
/// changes while the journal is open; a cached one past it stays until every sink's cursor has
/// passed the record (buffer/journal.h, "Threading").
struct ReadingRecord {
  std::uint64_t seq = 0;
  const InternedSeries* series = nullptr;
  double value = 0;
  Nanos event_time = 0;
  std::optional<Nanos> device_time;
  TimeReference reference = TimeReference::kReceive;
  RecordKind kind = RecordKind::kReading;
  WindowStats window;  ///< kAggregate only
  /// kAlert only: the alert record as JSON (design "Sinks": rule, device, metric, tags, state,
  /// severity, statistic, value, threshold, time, dedup_key; plus exact window_ns/time_ns).
  std::string alert;
};

}  // namespace gw
