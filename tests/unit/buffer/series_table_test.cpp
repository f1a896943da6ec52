#include "buffer/series_table.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

using gw::Series;
using gw::SeriesId;
using gw::buffer::SeriesTable;

namespace {

Series sensor(int i, std::string metric = "temp") {
  return Series{"sensor-" + std::to_string(i), std::move(metric), {}};
}

}  // namespace

TEST_CASE("series table: one id per distinct series, dense, references never move") {
  SeriesTable t(1000);
  CHECK(t.intern(sensor(1)) == 0);
  CHECK(t.intern(sensor(2)) == 1);
  CHECK(t.intern(sensor(1, "hum")) == 2);
  CHECK(t.intern(Series{"sensor-1", "temp", {{"line", "3"}}}) == 3);  // tags are part of it
  CHECK(t.intern(sensor(1)) == 0);
  CHECK(t.intern(Series{"sensor-1", "temp", {{"line", "3"}}}) == 3);
  CHECK(t.size() == 4);
  const gw::InternedSeries* first = &t[0];
  for (int i = 3; i < 50000; ++i) t.intern(sensor(i));  // the index grows several times
  CHECK(&t[0] == first);
  CHECK(t[0] == sensor(1));
  CHECK(t.size() == 4 + 49997);
  for (int i = 3; i < 50000; ++i) REQUIRE(t.intern(sensor(i)) == static_cast<SeriesId>(i + 1));
  CHECK(t.intern(sensor(2)) == 1);
}

TEST_CASE("series table: series read back from the journal are found by value") {
  SeriesTable t(0);
  CHECK(t.add(sensor(7)) == 0);
  CHECK(t.add(sensor(8)) == 1);
  CHECK(t.intern(sensor(8)) == 1);
  CHECK(t.intern(sensor(7)) == 0);
  CHECK(t.intern(sensor(9)) == 2);
}

TEST_CASE("series table: bytes per series") {
  constexpr int kSeries = 100000;
  SeriesTable t(200000);
  const std::size_t empty = t.memoryBytes();
  for (int i = 0; i < kSeries; ++i) t.intern(sensor(i));
  const std::size_t per = (t.memoryBytes() - empty) / kSeries;
  MESSAGE("100,000 series with short names: ", per,
          " bytes each (kept as: ", sizeof(gw::InternedSeries), ")");
  // The entry plus at most ~11 bytes of index (2^17 slots of 8 bytes at 100,000: the index
  // grows with what it holds; sized for the 200,000 expected it took 2^18 slots, 21 bytes per
  // series); the unordered_map before it took ~48 bytes of node per series plus its buckets
  // (1.6 MB reserved up front).
  CHECK(per <= sizeof(gw::InternedSeries) + 11);
}

TEST_CASE("series table: a plant's series share their metrics and tag sets (issue 13)") {
  // As a topic template `plant1/{line}/{device}/{metric}` gives them: 100,000 devices on 3
  // lines, 2 metrics each.
  constexpr int kDevices = 50000;
  SeriesTable t(200000);
  const std::size_t empty = t.memoryBytes();
  for (int i = 0; i < kDevices; ++i) {
    for (const char* metric : {"temp", "pressure"}) {
      t.intern(Series{
          "dev-" + std::to_string(i), metric, {{"line", "line" + std::to_string(i % 3 + 1)}}});
    }
  }
  const std::size_t n = t.size();
  REQUIRE(n == 2 * kDevices);
  const std::size_t per = (t.memoryBytes() - empty) / n;
  MESSAGE("100,000 series with one tag: ", per, " bytes each");
  // A Series per series took 88 bytes plus its tag vector's 64 on the heap plus the index:
  // ~163. Now the 48-byte entry and the index; the 2 metrics and 3 tag sets are kept once.
  CHECK(per <= 64);
  CHECK(t.metricCount() == 2);
  CHECK(t.tagSetCount() == 3);
  CHECK(&t[0].tags == &t[3 * 2].tags);  // dev-0 and dev-3: line1, one copy
  CHECK(&t[0].metric == &t[2].metric);  // temp
  CHECK(t[5] == Series{"dev-2", "pressure", {{"line", "line3"}}});
  CHECK(t.intern(Series{"dev-2", "pressure", {{"line", "line3"}}}) == 5);
  // Read back from the journal: shared the same way.
  SeriesTable back(0);
  for (std::size_t i = 0; i < n; ++i) back.add(t[i].toSeries());
  CHECK(back.tagSetCount() == 3);
  CHECK((back.memoryBytes() - SeriesTable(0).memoryBytes()) / n <= 64);
}

TEST_CASE("slot index: grows with what it holds, a few slots moved per insert, every key found") {
  gw::SlotIndex index(1u << 20);  // the maximum no longer sizes it
  const auto hash = [](std::uint32_t id) { return id * 2654435761u; };  // spread, never equal
  const auto is = [](std::uint32_t want) {
    return [want](std::uint32_t id) { return id == want; };
  };
  constexpr std::uint32_t kIds = 100000;
  bool grew_incrementally = false;
  for (std::uint32_t id = 0; id < kIds; ++id) {
    const std::size_t slots_before = index.slotCount();
    const bool was_growing = index.growing();
    index.insert(id, hash(id));
    if (index.growing() && !was_growing) {
      grew_incrementally = true;
      CHECK(slots_before > gw::SlotIndex::kRehashAtOnce);
      CHECK(index.slotCount() == slots_before * 2);
    }
    // While the old table is being moved, every key is found, old and new.
    if (index.growing() || id % 997 == 0)
      for (std::uint32_t k = id - std::min<std::uint32_t>(id, 40); k <= id; ++k)
        REQUIRE(index.find(hash(k), is(k)) == k);
    if (id % 4096 == 0)
      for (std::uint32_t k = 0; k <= id; k += 7) REQUIRE(index.find(hash(k), is(k)) == k);
  }
  CHECK(grew_incrementally);
  CHECK_FALSE(index.growing());
  CHECK(index.size() == kIds);
  // 100,000 entries at most 4/5 full: 131,072 slots of 8 bytes, nothing sized for the maximum.
  CHECK(index.slotCount() == 131072);
  CHECK(index.memoryBytes() == 131072 * 8);
  for (std::uint32_t k = 0; k < kIds; ++k) REQUIRE(index.find(hash(k), is(k)) == k);
  CHECK(index.find(hash(kIds), is(kIds)) == gw::SlotIndex::kNone);
  // Erase while growing: nothing lost (core/slot_index_test.cpp: without draining at once).
  gw::SlotIndex g(0);
  std::uint32_t n = 0;
  while (!g.growing()) g.insert(n, hash(n)), ++n;
  g.erase(3, hash(3));
  for (std::uint32_t k = 0; k < n; ++k)
    REQUIRE(g.find(hash(k), is(k)) == (k == 3 ? gw::SlotIndex::kNone : k));
  for (std::uint32_t k = 0; k < n; ++k)
    if (k != 3) g.erase(k, hash(k));
  while (g.growing()) g.insert(n, hash(n)), g.erase(n, hash(n)), ++n;
  g.shrink();
  CHECK(g.memoryBytes() == 16 * 8);
}
