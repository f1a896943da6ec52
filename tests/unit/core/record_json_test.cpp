#include "core/record_json.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "core/time.h"
#include "core/window_stats.h"

namespace {

using gw::kNanosPerMilli;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::ReadingRecord;
using gw::Series;
using gw::TimeReference;

// 2026-11-21T10:15:30.123456789Z
constexpr Nanos kT0 = 1'795'256'130'123'456'789;

std::string json(const ReadingRecord& r) {
  std::string out;
  gw::appendReadingJson(out, r);
  return out;
}

std::string aggregateJson(const ReadingRecord& r) {
  std::string out;
  gw::appendAggregateJson(out, r);
  return out;
}

}  // namespace

TEST_CASE("reading JSON: escaping, tags, optional device time") {
  Series s{"pump 7,\"a\"=b", "bearing_temp", {{"line", "l\\3"}, {"site", "north"}}};
  ReadingRecord r;
  r.seq = 42;
  const gw::InternedSeries interned(s);
  r.series = &interned;
  r.value = 21.5;
  r.event_time = kT0;
  r.device_time = kT0 - 2'500 * kNanosPerMilli;
  r.reference = TimeReference::kBroker;
  CHECK(json(r) ==
        R"({"device":"pump 7,\"a\"=b","metric":"bearing_temp","tags":{"line":"l\\3",)"
        R"("site":"north"},"value":21.5,"time":"2026-11-21T10:15:30.123Z",)"
        R"("device_time":"2026-11-21T10:15:27.623Z","reference":"broker","offset_ms":2500,)"
        R"("seq":42})");

  SUBCASE("no device time: device_time and offset_ms absent, empty tags") {
    Series bare{"d", "m", {}};
    ReadingRecord b;
    b.seq = 18446744073709551615ull;
    const gw::InternedSeries interned_bare(bare);
    b.series = &interned_bare;
    b.value = -0.1;
    b.event_time = kT0;
    CHECK(json(b) == R"({"device":"d","metric":"m","tags":{},"value":-0.1,)"
                     R"("time":"2026-11-21T10:15:30.123Z","reference":"receive",)"
                     R"("seq":18446744073709551615})");
  }
  SUBCASE("negative offset (device clock ahead), non-finite value") {
    r.device_time = kT0 + 3'600 * kNanosPerSecond;
    r.value = std::nan("");
    const std::string j = json(r);
    CHECK(j.find(R"("value":null,)") != std::string::npos);
    CHECK(j.find(R"("device_time":"2026-11-21T11:15:30.123Z")") != std::string::npos);
    CHECK(j.find(R"("offset_ms":-3600000,)") != std::string::npos);
  }
  SUBCASE("appends to what is already in the buffer") {
    std::string out = "x";
    gw::appendReadingJson(out, r);
    CHECK(out.substr(0, 12) == "x{\"device\":\"");
  }
}

TEST_CASE("aggregate JSON: window, statistics in kStatOrder, late, sketch marker") {
  Series s{"pump-7", "bearing_temp", {{"line", "3"}}};
  ReadingRecord r;
  r.seq = 7;
  const gw::InternedSeries interned(s);
  r.series = &interned;
  r.kind = gw::RecordKind::kAggregate;
  r.value = std::nan("");
  r.event_time = 1'795'256'130'000'000'000;  // 2026-11-21T10:15:30Z
  r.window.size = 10 * kNanosPerSecond;
  r.window.start = r.event_time;
  r.window.count = 12;
  r.window.late = 1;
  r.window.min = 20.5;
  r.window.max = 23;
  r.window.avg = 21.25;
  r.window.p95 = 22.75;
  CHECK(aggregateJson(r) ==
        R"({"device":"pump-7","metric":"bearing_temp","tags":{"line":"3"},"window":"10s",)"
        R"("window_start":"2026-11-21T10:15:30.000Z","window_end":"2026-11-21T10:15:40.000Z",)"
        R"("count":12,"min":20.5,"max":23,"avg":21.25,"p95":22.75,"late":1,"seq":7})");

  SUBCASE("extra statistics follow the default ones; a sketch says so") {
    r.window.stats = gw::kDefaultStats | gw::Stat::kSum | gw::Stat::kLast;
    r.window.sum = 255;
    r.window.last = 21;
    r.window.quantiles = gw::QuantileMode::kSketch;
    CHECK(aggregateJson(r) ==
          R"({"device":"pump-7","metric":"bearing_temp","tags":{"line":"3"},"window":"10s",)"
          R"("window_start":"2026-11-21T10:15:30.000Z","window_end":"2026-11-21T10:15:40.000Z",)"
          R"("count":12,"min":20.5,"max":23,"avg":21.25,"p95":22.75,"sum":255,"last":21,)"
          R"("late":1,"quantiles":"sketch","seq":7})");
  }
}
