// The bounded per-device clock table and the sensors query (issue 13): capacity, eviction of
// idle devices oldest first, the message rate, and filtering, sorting and limiting the view.
#include "gateway/clock_table.h"

#include <doctest/doctest.h>

#include <string>

#include "gateway/device_query.h"
#include "gateway/status.h"

using gw::DeviceQuery;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::clock::ClockTable;

namespace {
constexpr Nanos kS = kNanosPerSecond;
constexpr Nanos kT0 = 1'795'000'000 * kS;
}  // namespace

TEST_CASE("clock table: at most max devices; the idle ones go first, then room again") {
  ClockTable t({}, 3, 60 * kS);
  REQUIRE(t.use("a", kT0) != nullptr);
  REQUIRE(t.use("b", kT0 + 10 * kS) != nullptr);
  REQUIRE(t.use("c", kT0 + 20 * kS) != nullptr);
  CHECK(t.use("d", kT0 + 21 * kS) == nullptr);  // full
  CHECK(t.refused() == 1);
  CHECK(t.use("a", kT0 + 30 * kS) != nullptr);  // known: always served, and now most recent
  CHECK(t.evictIdle(kT0 + 69 * kS) == 0);
  CHECK(t.evictIdle(kT0 + 70 * kS) == 1);  // b (last seen at +10 s)
  CHECK(t.size() == 2);
  CHECK(t.evictIdle(kT0 + 80 * kS) == 1);  // c
  CHECK(t.use("d", kT0 + 81 * kS) != nullptr);
  CHECK(t.evictIdle(kT0 + 1000 * kS) == 2);
  CHECK(t.size() == 0);
  CHECK(t.evicted() == 4);
}

TEST_CASE("clock table: a device's message rate, decaying when it goes silent") {
  ClockTable t({}, 10, 3600 * kS);
  Nanos now = kT0;
  for (int i = 0; i < 40; ++i, now += kS / 2) {  // 2 per second for 20 s
    auto* e = t.use("pump-1", now);
    e->observe(now - 5 * kS, now);
  }
  double rate = -1;
  t.forEach([&](const std::string&, const ClockTable::Entry& e) { rate = *t.rate(e, now); });
  CHECK(rate == doctest::Approx(2.0).epsilon(0.15));
  t.forEach(
      [&](const std::string&, const ClockTable::Entry& e) { rate = *t.rate(e, now + 100 * kS); });
  CHECK(rate < 0.2);
}

TEST_CASE("sensors query: parsed from the request, filtered, sorted, limited") {
  DeviceQuery q;
  CHECK_FALSE(gw::parseDeviceQuery(" pump-* --limit 2 --sort name", q));
  CHECK(q.pattern == "pump-*");
  CHECK(q.limit == 2);
  CHECK(q.sort == DeviceQuery::Sort::kName);
  DeviceQuery bad;
  CHECK(gw::parseDeviceQuery("--limit x", bad).value() == "--limit needs a number (0: all)");
  CHECK(gw::parseDeviceQuery("--sort loud", bad).has_value());
  CHECK(gw::parseDeviceQuery("a b", bad).has_value());

  ClockTable t({}, 100, 3600 * kS);
  for (const char* d : {"pump-3", "valve-1", "pump-1", "pump-2"}) t.use(d, kT0);
  t.use("pump-2", kT0 + 5 * kS);  // seen last
  std::uint64_t matched = 0;
  auto names = [](const std::vector<gw::DeviceClockStatus>& v) {
    std::string s;
    for (const auto& d : v) s += d.device + " ";
    return s;
  };
  CHECK(names(gw::selectDevices(t, q, kT0 + 6 * kS, matched)) == "pump-1 pump-2 ");
  CHECK(matched == 3);
  q = DeviceQuery{"*", 0, DeviceQuery::Sort::kLastSeen};
  CHECK(names(gw::selectDevices(t, q, kT0 + 6 * kS, matched)).starts_with("pump-2 "));
  CHECK(matched == 4);
  // Attention: silent longest first (no clock is out of bounds or settling differently here).
  q = DeviceQuery{"pump-?", 1, DeviceQuery::Sort::kAttention};
  CHECK(names(gw::selectDevices(t, q, kT0 + 6 * kS, matched)) == "pump-1 ");
}
