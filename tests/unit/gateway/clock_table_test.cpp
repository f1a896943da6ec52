// The bounded per-device clock table and the sensors query (issue 13): capacity, eviction of
// idle devices oldest first, the message rate, and filtering, sorting and limiting the view.
#include "gateway/clock_table.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>

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

TEST_CASE("clock table: out-of-bounds and step totals kept by observe() and eviction") {
  ClockTable t({}, 10, 60 * kS);
  auto walked = [&] {  // what status used to compute with a pass over every device
    std::uint64_t oob = 0, steps = 0;
    t.forEach([&](const std::string&, const ClockTable::Entry& e) {
      oob += e.estimator.state().out_of_bounds;
      steps += e.estimator.state().steps;
    });
    return std::pair{oob, steps};
  };
  const Nanos ref = kT0;
  // "good": a correct clock; "dead-rtc": 1970 (out of bounds); "jumpy": steps by an hour.
  for (int i = 0; i < 20; ++i) {
    const Nanos r = ref + i * kS;
    REQUIRE(t.observe("good", kT0 + i * kS, r - 5'000'000, r, gw::TimeReference::kBroker));
    REQUIRE(t.observe("dead-rtc", kT0 + i * kS, i * kS, r, gw::TimeReference::kBroker));
    const Nanos jump = (i / 5) % 2 ? 3600 * kS : 0;
    REQUIRE(t.observe("jumpy", kT0 + i * kS, r + jump, r, gw::TimeReference::kBroker));
    CHECK(walked() == std::pair{t.outOfBounds(), t.steps()});
  }
  CHECK(t.outOfBounds() == 1);
  CHECK(t.outOfBoundsNames() == std::set<std::string, std::less<>>{"dead-rtc"});
  CHECK(t.steps() >= 2);
  // Only "jumpy" keeps talking: the others are evicted and leave the totals.
  for (int i = 20; i < 100; ++i)
    t.observe("jumpy", kT0 + i * kS, ref + i * kS, ref + i * kS, gw::TimeReference::kBroker);
  CHECK(t.evictIdle(kT0 + 100 * kS) == 2);
  CHECK(t.outOfBounds() == 0);
  CHECK(t.outOfBoundsNames().empty());
  CHECK(walked() == std::pair{t.outOfBounds(), t.steps()});
}
