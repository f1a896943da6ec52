// `gatewayctl sensors` and the Prometheus per-device series at scale (issue 13): the devices
// a query selects are walked in slices of bounded size, and the result is exactly the one a
// single pass (sort everything, take the first `limit`) gives.
#include "gateway/device_query.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "alerts/rule.h"
#include "gateway/clock_table.h"
#include "gateway/status.h"

using gw::DeviceQuery;
using gw::DeviceWalk;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::clock::ClockTable;

namespace {
constexpr Nanos kS = kNanosPerSecond;
constexpr Nanos kT0 = 1'795'000'000 * kS;

std::string name(int i) {
  char b[16];
  std::snprintf(b, sizeof b, "dev-%05d", i);
  return b;
}

/// n devices with varied clocks: every 97th on 1970 (out of bounds), offsets of up to ±3 s,
/// last seen spread over 60 s, some with several samples (converged), some with rates.
void fill(ClockTable& t, int n) {
  for (int i = 0; i < n; ++i) {
    const int samples = 1 + (i % 7 == 0 ? 12 : 0);
    for (int k = 0; k < samples; ++k) {
      const Nanos ref = kT0 + ((i * 7919) % 60) * kS + k * kS / 4;
      const Nanos device_time = i % 97 == 0 ? ref - (ref - kS) : ref - ((i % 13) - 6) * kS / 2;
      t.observe(name(i), ref, device_time, ref, gw::TimeReference::kBroker);
    }
  }
}

/// The reference answer: every matching device sorted by the documented order.
std::vector<std::string> expected(const ClockTable& t, const DeviceQuery& q, Nanos now,
                                  std::uint64_t& matched) {
  struct Row {
    std::string device;
    bool oob, converged;
    Nanos last_use, offset;
    double rate;
  };
  std::vector<Row> rows;
  t.forEach([&](const std::string& d, const ClockTable::Entry& e) {
    if (!gw::alerts::globMatch(q.pattern, d)) return;
    const auto& c = e.estimator.state();
    rows.push_back({d, c.out_of_bounds, c.converged, e.last_use, std::abs(c.offset),
                    t.rate(e, now).value_or(-1)});
  });
  matched = rows.size();
  std::sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    using S = DeviceQuery::Sort;
    switch (q.sort) {
      case S::kAttention:
        if (a.oob != b.oob) return a.oob;
        if (a.converged != b.converged) return !a.converged;
        if (a.last_use != b.last_use) return a.last_use < b.last_use;
        break;
      case S::kName:
        break;
      case S::kLastSeen:
        if (a.last_use != b.last_use) return a.last_use > b.last_use;
        break;
      case S::kRate:
        if (a.rate != b.rate) return a.rate > b.rate;
        break;
      case S::kOffset:
        if (a.offset != b.offset) return a.offset > b.offset;
        break;
    }
    return a.device < b.device;
  });
  if (q.limit != 0 && rows.size() > q.limit) rows.resize(q.limit);
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.device);
  return out;
}

std::vector<std::string> names(const std::vector<gw::DeviceClockStatus>& v) {
  std::vector<std::string> out;
  for (const auto& d : v) out.push_back(d.device);
  return out;
}

}  // namespace

TEST_CASE("device walk: never more than a slice per step, and exactly a full sort's answer") {
  constexpr int kDevices = 20'000;
  constexpr std::size_t kSlice = 1000;
  ClockTable t({}, kDevices, 3600 * kS);
  fill(t, kDevices);
  REQUIRE(t.size() == kDevices);
  const Nanos now = kT0 + 61 * kS;
  using S = DeviceQuery::Sort;
  for (const DeviceQuery& q :
       {DeviceQuery{"*", 100, S::kAttention}, DeviceQuery{"*", 1000, S::kName},
        DeviceQuery{"dev-1*", 50, S::kLastSeen}, DeviceQuery{"*", 25, S::kRate},
        DeviceQuery{"dev-0??0?", 0, S::kOffset}, DeviceQuery{"nothing-*", 10, S::kName},
        DeviceQuery{"*", 0, S::kAttention}}) {
    CAPTURE(q.pattern);
    CAPTURE(q.limit);
    DeviceWalk walk(q);
    std::size_t steps = 0, examined = 0;
    bool done = false;
    while (!done) {
      done = walk.step(t, now, kSlice);
      ++steps;
      CHECK(walk.examined() <= kSlice);
      examined += walk.examined();
      REQUIRE(steps <= kDevices / kSlice + 1);
    }
    CHECK(examined == kDevices);
    CHECK(steps >= kDevices / kSlice);
    std::uint64_t matched = 0, want_matched = 0;
    const auto got = names(walk.take(matched));
    const auto want = expected(t, q, now, want_matched);
    CHECK(matched == want_matched);
    CHECK(got == want);
    // The one-pass form gives the same.
    std::uint64_t m1 = 0;
    CHECK(names(gw::selectDevices(t, q, now, m1)) == want);
  }
  // The attention order puts the 1970 clocks first.
  std::uint64_t matched = 0;
  const auto first = gw::selectDevices(t, {"*", 3, S::kAttention}, now, matched);
  REQUIRE(first.size() == 3);
  for (const auto& d : first) CHECK(d.clock.out_of_bounds);
}

TEST_CASE("device walk: devices added and evicted between steps are listed at most once") {
  ClockTable t({}, 5000, 30 * kS);
  fill(t, 3000);
  DeviceWalk walk({"*", 0, DeviceQuery::Sort::kName});
  int added = 3000;
  Nanos now = kT0 + 61 * kS;
  while (!walk.step(t, now, 500)) {
    for (int k = 0; k < 200; ++k, ++added)
      t.observe(name(added), now, now, now, gw::TimeReference::kBroker);
    now += 5 * kS;
    t.evictIdle(now);  // the oldest go after 30 s idle
  }
  std::uint64_t matched = 0;
  const auto got = names(walk.take(matched));
  CHECK(std::set<std::string>(got.begin(), got.end()).size() == got.size());
  CHECK(std::is_sorted(got.begin(), got.end()));
  CHECK(!got.empty());
}
