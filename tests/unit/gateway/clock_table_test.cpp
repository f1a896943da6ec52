// The bounded per-device clock table and the sensors query (issue 13): capacity, eviction of
// idle devices oldest first, the message rate, and filtering, sorting and limiting the view.
#include "gateway/clock_table.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

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

// Issue 13: the table is one dense array with an open-addressing index; eviction moves the last
// entry into the hole. Checked against a plain model (a map and an LRU list) on random use.
TEST_CASE("clock table: random use and eviction match a model; every device keeps its estimator") {
  std::mt19937 rng(13);
  ClockTable t({}, 300, 50 * kS);
  std::map<std::string, Nanos> model;  // device → last use
  std::uint64_t refused = 0, evicted = 0;
  Nanos now = kT0;
  for (int step = 0; step < 20000; ++step) {
    now += static_cast<Nanos>(rng() % 200) * kS / 100;  // 0-2 s
    const std::string device = "d" + std::to_string(rng() % 500);
    auto* e = t.use(device, now);
    if (model.count(device) == 0 && model.size() >= 300) {
      CHECK(e == nullptr);
      ++refused;
    } else {
      REQUIRE(e != nullptr);
      model[device] = now;
      // The estimator is the device's own: its sample count is the model's count of uses
      // with a device time (one per use here).
      e->observe(now - 3 * kS, now);
    }
    if (step % 97 == 0) {
      std::size_t gone = 0;
      for (auto it = model.begin(); it != model.end();)
        if (now - it->second >= 50 * kS) {
          it = model.erase(it);
          ++gone;
        } else {
          ++it;
        }
      CHECK(t.evictIdle(now) == gone);
      evicted += gone;
    }
    REQUIRE(t.size() == model.size());
  }
  CHECK(t.refused() == refused);
  CHECK(t.evicted() == evicted);
  CHECK(evicted > 100);
  std::map<std::string, Nanos> seen;
  t.forEach([&](const std::string& d, const ClockTable::Entry& e) {
    seen[d] = e.last_use;
    CHECK(e.estimator.state().samples >= 1);
  });
  CHECK(seen == model);
}

TEST_CASE("clock table: without a caller's name, an entry keeps its own copy") {
  ClockTable t({}, 10, 60 * kS);
  {
    std::string temporary = "a-device-name-longer-than-fifteen-characters";
    REQUIRE(t.use(temporary, kT0) != nullptr);
    temporary.assign(temporary.size(), 'x');  // the caller's string changes: the entry's not
  }
  std::vector<std::string> seen;
  t.forEach([&](const std::string& name, const ClockTable::Entry&) { seen.push_back(name); });
  CHECK(seen == std::vector<std::string>{"a-device-name-longer-than-fifteen-characters"});
  CHECK(t.use("a-device-name-longer-than-fifteen-characters", kT0 + kS) != nullptr);
  CHECK(t.size() == 1);
  CHECK(t.evictIdle(kT0 + 1000 * kS) == 1);  // the copy is freed with the entry (ASan build)
  CHECK(t.size() == 0);
}

TEST_CASE("clock table: bytes per device, and memory back down after eviction") {
  constexpr int kDevices = 100000;
  // The names as the journal keeps them: strings that outlive the table (the pipeline passes
  // the journal's Series::device), so the table keeps a pointer, not a copy.
  std::deque<std::string> names;
  ClockTable t({}, 200000, 60 * kS);
  const std::size_t empty = t.memoryBytes();
  for (int i = 0; i < kDevices; ++i) {
    const Nanos now = kT0 + i * 1000;
    const std::string& name = names.emplace_back("sensor-" + std::to_string(i));
    REQUIRE(t.observe(name, now, now - 5 * kS, now, gw::TimeReference::kBroker, &name));
  }
  const std::size_t full = t.memoryBytes();
  MESSAGE("100,000 devices, one sample each: ", (full - empty) / kDevices, " bytes each");
  // 293 with the options copied in each estimator, padding after its ring, an index sized
  // for max_series (2^18 slots) and a 32-byte copy of the name; 236 with a SkewEstimator in
  // each entry (the first samples not yet kept apart).
  CHECK((full - empty) / kDevices <= 90);
  // Found again by value (another string with the same text), its name the journal's.
  CHECK(t.use(std::string("sensor-77"), kT0 + kDevices * 1000) != nullptr);
  CHECK(t.size() == kDevices);
  bool shared = false;
  t.forEachIn(77, 78, [&](const std::string& name, const ClockTable::Entry&) {
    shared = &name == &names[77];
  });
  CHECK(shared);
  // The newer half is used again; the older half goes idle and is evicted.
  for (int i = kDevices / 2; i < kDevices; ++i) {
    const Nanos now = kT0 + 30 * kS;
    REQUIRE(t.observe("sensor-" + std::to_string(i), now, now - 5 * kS, now,
                      gw::TimeReference::kBroker));
  }
  CHECK(t.evictIdle(kT0 + 61 * kS) == kDevices / 2);
  CHECK(t.size() == kDevices / 2);
  // The evicted half's entries and samples go back (the other half now keeps 2 samples each).
  CHECK(t.memoryBytes() < full * 7 / 10);
  CHECK(t.use("sensor-99999", kT0 + 62 * kS) != nullptr);  // still found after the moves
  CHECK(t.size() == kDevices / 2);
  CHECK(t.evictIdle(kT0 + 1000 * kS) == kDevices / 2);
  CHECK(t.size() == 0);
  MESSAGE("all evicted: ", t.memoryBytes() - empty, " bytes above an empty table");
  CHECK(t.memoryBytes() - empty <= 256 * sizeof(ClockTable::Entry) + 4096);  // a spare chunk
  CHECK(t.use("again", kT0 + 1001 * kS) != nullptr);
  CHECK(t.size() == 1);
}

TEST_CASE("clock table: forEachIn visits exactly the positions asked for, in forEach's order") {
  ClockTable t({}, 1000, 3600 * kS);
  for (int i = 0; i < 600; ++i) REQUIRE(t.use("dev-" + std::to_string(i), kT0 + i) != nullptr);
  std::vector<std::string> whole, sliced;
  t.forEach([&](const std::string& d, const ClockTable::Entry&) { whole.push_back(d); });
  std::size_t visits = 0, size = 0;
  for (std::size_t begin = 0; begin < 700; begin += 256) {
    size = t.forEachIn(begin, begin + 256, [&](const std::string& d, const ClockTable::Entry&) {
      sliced.push_back(d);
      ++visits;
    });
  }
  CHECK(size == 600);
  CHECK(visits == 600);  // the slice past the end visits nothing
  CHECK(sliced == whole);
  visits = 0;
  CHECK(t.forEachIn(10, 13, [&](const std::string& d, const ClockTable::Entry&) {
    CHECK(d == whole[10 + visits++]);
  }) == 600);
  CHECK(visits == 3);
}

namespace {
using gw::clock::ClockOptions;
using gw::clock::DeviceClock;
using gw::clock::SkewEstimator;

bool sameClock(const DeviceClock& a, const DeviceClock& b) {
  return a.offset == b.offset && a.drift_ppm == b.drift_ppm && a.samples == b.samples &&
         a.steps == b.steps && a.last_step == b.last_step && a.out_of_bounds == b.out_of_bounds &&
         a.converged == b.converged && a.reference == b.reference &&
         a.drift_applied == b.drift_applied && a.last_seen == b.last_seen && a.shifts == b.shifts &&
         a.jitter == b.jitter && a.suspect == b.suspect;
}
}  // namespace

// Issue 13: a device's first samples are kept as they came and replayed on request; past
// kLiteSamples it gets its own SkewEstimator. Every answer must be the one of a SkewEstimator fed
// the same samples: corrections, state() after each sample, and the table's totals.
TEST_CASE(
    "clock table: a device's first samples kept apart give exactly a SkewEstimator's results") {
  for (const ClockOptions options : {ClockOptions{}, ClockOptions{3600 * kS, 2 * kS, 50'000'000}}) {
    std::mt19937_64 rng(16);
    ClockTable t(options, 1000, 3600 * kS);
    std::map<std::string, SkewEstimator> model;
    const Nanos max_skew = options.max_skew;
    Nanos now = kT0;
    std::uint64_t out = 0;
    for (int step = 0; step < 6000; ++step) {
      now += static_cast<Nanos>(rng() % 1000) * 1'000'000;
      const int d = static_cast<int>(rng() % 300);
      const std::string device = "d" + std::to_string(d);
      // Per device: a clock off by a device-specific amount (some beyond max_skew, some at
      // 1970), steps now and then, delays of 0-300 ms, a few messages delayed by seconds.
      Nanos offset = (d % 7 == 0)   ? -(now - static_cast<Nanos>(d) * kS)
                     : (d % 5 == 0) ? max_skew + static_cast<Nanos>(d) * kS
                                    : static_cast<Nanos>(d) * 37 * 1'000'000;
      if (rng() % 16 == 0) offset += (rng() % 2 ? 1 : -1) * static_cast<Nanos>(rng() % 20) * kS;
      Nanos delay = static_cast<Nanos>(rng() % 300) * 1'000'000;
      if (rng() % 20 == 0) delay += 3 * kS;
      const Nanos device_time = now - offset;
      const Nanos reference_time = now + delay;
      const auto kind = rng() % 2 ? gw::TimeReference::kBroker : gw::TimeReference::kReceive;
      auto [it, added] = model.try_emplace(device, options);
      SkewEstimator& m = it->second;
      const bool out_before = m.outOfBounds();
      const auto expected = m.observe(device_time, reference_time, kind);
      out += m.outOfBounds() - out_before;
      const auto got = t.observe(device, now, device_time, reference_time, kind);
      REQUIRE(got.has_value());
      REQUIRE(got->event_time == expected.event_time);
      REQUIRE(got->offset == expected.offset);
      if (step % 13 == 0) {
        t.forEach([&](const std::string& name, const ClockTable::Entry& e) {
          REQUIRE(sameClock(e.estimator.state(), model.at(name).state()));
          CHECK(e.estimator.samples() == model.at(name).samples());
        });
      }
      REQUIRE(t.outOfBounds() == out);
    }
    std::uint64_t steps = 0, lite = 0;
    t.forEach([&](const std::string& name, const ClockTable::Entry& e) {
      REQUIRE(sameClock(e.estimator.state(), model.at(name).state()));
      steps += model.at(name).steps();
      lite += !e.estimator.full();
    });
    CHECK(t.steps() == steps);
    CHECK(steps > 0);
    CHECK(t.outOfBounds() > 0);
    CHECK(lite == 0);  // 20 samples per device on average: every one has its own estimator
    // use() gives a device its own estimator, with the same state.
    ClockTable u(options, 10, 3600 * kS);
    SkewEstimator m(options);
    for (int i = 0; i < 3; ++i) {
      const Nanos r = kT0 + i * kS;
      m.observe(r - 2 * kS, r + 10'000'000, gw::TimeReference::kBroker);
      REQUIRE(u.observe("x", kT0 + i * kS, r - 2 * kS, r + 10'000'000, gw::TimeReference::kBroker));
    }
    SkewEstimator* own = u.use("x", kT0 + 3 * kS);
    REQUIRE(own != nullptr);
    CHECK(sameClock(own->state(), m.state()));
    CHECK(own->observe(kT0 + 2 * kS, kT0 + 4 * kS).event_time ==
          m.observe(kT0 + 2 * kS, kT0 + 4 * kS).event_time);
  }
}

// Issue 13: bytes per device with 1 sample, 3 samples and a full history (memoryBytes(): the
// entry, its share of the index, the kept samples or the estimator with its history; malloc
// adds 8-16 bytes per allocation on top).
TEST_CASE("clock table: bytes per device at 1, 3 and a full history") {
  constexpr int kDevices = 2000;
  std::deque<std::string> names;
  for (int i = 0; i < kDevices; ++i) names.emplace_back("sensor-" + std::to_string(i));
  auto perDevice = [&](int samples) {
    ClockTable t({}, 10000, 3600 * kS);
    const std::size_t empty = t.memoryBytes();
    for (int s = 0; s < samples; ++s)
      for (int i = 0; i < kDevices; ++i) {
        const Nanos now = kT0 + s * kS + i;
        REQUIRE(t.observe(names[static_cast<std::size_t>(i)], now,
                          now - 5 * kS + (s * i) % 7'000'000, now, gw::TimeReference::kBroker,
                          &names[static_cast<std::size_t>(i)]));
      }
    return (t.memoryBytes() - empty) / kDevices;
  };
  const std::size_t one = perDevice(1), three = perDevice(3), many = perDevice(300);
  MESSAGE("bytes per device: ", one, " with 1 sample, ", three, " with 3, ", many,
          " with a full history; entry ", sizeof(ClockTable::Entry));
  // 224-byte entries (a SkewEstimator in each) and the history: 266 / 298 / 362 before; 345
  // with a full history since the history is inline (one allocation, 48 bytes less of malloc
  // chunks than two); 321 since the estimator is 248 bytes.
  CHECK(sizeof(ClockTable::Entry) <= 56);
  CHECK(one <= 90);
  CHECK(three <= 140);
  CHECK(many <= 325);
}
