#include "buffer/series_table.h"

#include <doctest/doctest.h>

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
  const Series* first = &t[0];
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
          " bytes each (the Series itself: ", sizeof(Series), ")");
  // The Series plus at most ~21 bytes of index (2^18 slots of 8 bytes at 100,000); the
  // unordered_map it replaces took ~48 bytes of node per series plus its buckets (1.6 MB
  // reserved up front).
  CHECK(per <= sizeof(Series) + 24);
}
