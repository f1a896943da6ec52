// Compact journal rows (schema 7, issue 16): a reading's value as an exact decimal, its bytes in
// the page, and the upgrade of a version 6 file whose rows keep their old form.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "buffer/journal.h"
#include "buffer/salvage.h"
#include "buffer/sqlite_journal.h"
#include "tests/support/sqlite_connection.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z

// The shared test folder (tests/support/temp_dir.h), with the journal where gatewayd keeps it.
struct TempDir : gw::test::TempDir {
  TempDir() : gw::test::TempDir("gw-rows") {}
  fs::path db() const { return path / "state" / "journal.db"; }
};

JournalOptions optionsFor(const TempDir& dir) {
  JournalOptions o;
  o.path = dir.db();
  o.sinks = {"a"};
  return o;
}

using OtherConnection = gw::test::SqliteConnection;
const Series kTemp{"press-7", "temperature", {{"line", "3"}}};

bool sameBits(double a, double b) {
  if (std::isnan(a)) return std::isnan(b);  // a NaN is stored as NULL and read as NaN
  return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

// Values a reading may carry: sensor decimals, the edges of the encoding and of double.
std::vector<double> interestingValues() {
  std::vector<double> v = {21.37,
                           0.1,
                           1e-7,
                           123456.789,
                           -21.37,
                           -0.5,
                           0.30000000000000004,
                           1e-8,
                           1.23456789,
                           140737488355.3279,
                           1407374883553.28,
                           21.0,
                           -7.0,
                           0.0,
                           -0.0,
                           -0.0,
                           1e300,
                           -1e300,
                           9007199254740993.0,
                           std::numeric_limits<double>::denorm_min(),
                           -std::numeric_limits<double>::denorm_min(),
                           std::numeric_limits<double>::min(),
                           std::numeric_limits<double>::max(),
                           std::numeric_limits<double>::lowest(),
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()};
  std::mt19937_64 rng(16);
  for (int i = 0; i < 3000; ++i) {
    // Random bit patterns (any double at all), random decimals of 0-9 places, and values near
    // the powers of ten where rounding decides.
    v.push_back(std::bit_cast<double>(rng()));
    const auto m = static_cast<std::int64_t>(rng() % 2000000001) - 1000000000;
    v.push_back(static_cast<double>(m) / std::pow(10.0, static_cast<double>(rng() % 10)));
    v.push_back(std::nextafter(static_cast<double>(m % 10000) / 100.0, (i % 2) ? 1e9 : -1e9));
  }
  return v;
}

}  // namespace

TEST_CASE("decimalScale: an exact decimal m / 10^k, and nothing else, reads back bit-identical") {
  using detail::decimalScale;
  using detail::fromDecimal;
  double m = 0;
  CHECK(decimalScale(21.37, m) == 2);
  CHECK(m == 2137);
  CHECK(decimalScale(-21.37, m) == 2);
  CHECK(m == -2137);
  CHECK(decimalScale(0.1, m) == 1);
  CHECK(m == 1);
  CHECK(decimalScale(1e-7, m) == 7);
  CHECK(m == 1);
  CHECK(decimalScale(123456.789, m) == 3);
  CHECK(m == 123456789);
  // -0.0 is m = 0 at a scale: SQLite would read a stored -0.0 back as 0.0.
  CHECK(decimalScale(-0.0, m) == 1);
  CHECK(m == 0);
  CHECK(std::signbit(fromDecimal(0, 1)));
  // Stored as they are: integral (SQLite keeps them as integers already), NaN, infinities,
  // denormals, too many places or digits.
  for (double v :
       {21.0, 0.0, std::numeric_limits<double>::quiet_NaN(),
        std::numeric_limits<double>::infinity(), std::numeric_limits<double>::denorm_min(),
        0.30000000000000004, 1e-9, 1407374883553.28, 1e300})
    CHECK(decimalScale(v, m) == 0);
  size_t decimal = 0;
  const std::vector<double> values = interestingValues();
  for (double v : values) {
    CAPTURE(v);
    m = 0;
    const int k = decimalScale(v, m);
    REQUIRE(k >= 0);
    REQUIRE(k <= detail::kMaxDecimalScale);
    if (k == 0) continue;
    ++decimal;
    CHECK(m == std::trunc(m));
    CHECK((m != 0 || std::signbit(v)));
    CHECK(std::fabs(m) < 140737488355328.0);  // 2^47: an integer of at most 6 bytes
    CHECK(sameBits(fromDecimal(m, k), v));
  }
  CHECK(decimal > values.size() / 4);  // the random decimals, mostly
  // Column c: every reference reads back as itself, with every form; a compact one in a byte.
  for (int ref = 0; ref < 256; ++ref) {
    const bool compact = ref < detail::kCompactReferences;
    for (int k = 0; k <= (compact ? detail::kMaxDecimalScale : 0); ++k) {
      for (bool ms : {false, true}) {
        if (ms && !compact) continue;
        const detail::RowForm f{static_cast<std::uint8_t>(ref), k, ms};
        const std::int64_t c = detail::packReference(f);
        if (k > 0 || ms) CHECK((c >= -128 && c < 0));
        detail::RowForm back;
        REQUIRE(detail::unpackReference(c, back));
        CHECK(back.reference == ref);
        CHECK(back.scale == k);
        CHECK(back.ms == ms);
      }
    }
  }
  detail::RowForm f;
  CHECK_FALSE(detail::unpackReference(-73, f));
  CHECK_FALSE(detail::unpackReference(256, f));
}

TEST_CASE("every value reads back bit-identical from the file, by read, readDevice and salvage") {
  TempDir dir, live;
  const std::vector<double> values = interestingValues();
  // Times: no device time; one 7 ns off a ms; one in whole ms (t is kept in ms); whole-ms device
  // times at the ends of the int64 range, the event time wrapped around from it.
  constexpr Nanos kMax = std::numeric_limits<Nanos>::max(),
                  kMin = std::numeric_limits<Nanos>::min();
  const auto eventOf = [](size_t i) -> Nanos {
    if (i % 7 == 6) return i % 2 ? kMin + 5 : kMax - 5;
    return kT0 + static_cast<Nanos>(i) * kNanosPerMilli + static_cast<Nanos>(i % 1000);
  };
  const auto deviceOf = [&](size_t i) -> std::optional<Nanos> {
    if (i % 7 == 6)
      return i % 2 ? kMax / kNanosPerMilli * kNanosPerMilli
                   : kMin / kNanosPerMilli * kNanosPerMilli;
    if (i % 5 == 0) return std::nullopt;
    if (i % 5 == 1) return eventOf(i) - 7;
    return kT0 + static_cast<Nanos>(i) * kNanosPerMilli - 3 * kNanosPerMilli;
  };
  {
    auto j = Journal::open(optionsFor(dir));
    const SeriesId id = j->internSeries(kTemp);
    for (size_t i = 0; i < values.size(); ++i) {
      // References 0, 1 take the decimal form; 200 (a later reference) keeps v as it is.
      const auto ref = static_cast<TimeReference>(i % 3 == 2 ? 200 : i % 2);
      j->append(id, values[i], eventOf(i), deviceOf(i), ref);
    }
    REQUIRE(j->commit());
  }
  const auto check = [&](const std::vector<ReadingRecord>& out, size_t first) {
    for (size_t n = 0; n < out.size(); ++n) {
      const size_t i = first + n;
      CAPTURE(i);
      REQUIRE(i < values.size());
      // Only references below 16 take the decimal form that keeps -0.0 (SQLite stores a REAL
      // -0.0 as the integer 0, as before version 7).
      const bool plain = i % 3 == 2;
      CHECK(sameBits(out[n].value, plain && values[i] == 0 ? 0.0 : values[i]));
      CHECK(static_cast<int>(out[n].reference) == (plain ? 200 : static_cast<int>(i % 2)));
      CHECK(out[n].event_time == eventOf(i));
      CHECK(out[n].device_time == deviceOf(i));
    }
  };
  {
    auto j = Journal::open(optionsFor(dir));  // reopened: nothing from memory
    std::vector<ReadingRecord> out;
    j->read(0, values.size() + 10, out);
    REQUIRE(out.size() == values.size());
    check(out, 0);
    j->readDevice("press-7", 0, 100, values.size(), out);
    REQUIRE(out.size() == 100);
    check(out, values.size() - 100);
  }
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE c < 0") > 1000);  // decimals
    // t in ms (c -37..-72): the whole-ms device times of references 0, 1.
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE c <= -37") > 3000);
  }
  auto j = Journal::open(optionsFor(live));
  const SalvageReport rep = salvageInto(dir.db(), *j);
  CHECK(rep.readings == values.size());
  std::vector<ReadingRecord> out;
  j.reset();
  j = Journal::open(optionsFor(live));
  j->read(0, values.size() + 10, out);
  REQUIRE(out.size() == values.size());
  check(out, 0);
}

TEST_CASE("a typical reading's row takes at most 30 bytes of its page (36 in version 6)") {
  constexpr size_t kRows = 20000;
  TempDir dir;
  {
    auto j = Journal::open(optionsFor(dir));
    std::vector<SeriesId> ids;
    for (int d = 0; d < 100; ++d)
      ids.push_back(j->internSeries(Series{"dev-" + std::to_string(d), "temperature", {}}));
    // As pi_bench's devices send them: two decimals, the device time in ms (JSON "ts"), the
    // event time that time corrected by the device's clock offset (ns).
    for (size_t i = 0; i < kRows; ++i) {
      const Nanos device = kT0 + static_cast<Nanos>(i / 10) * kNanosPerMilli;
      const Nanos event = device + 3'217'411 + static_cast<Nanos>(i * 7919 % 100000);
      j->append(ids[i % ids.size()], 15.0 + static_cast<double>(i * 37 % 2000) / 100.0, event,
                device, TimeReference::kReceive);
      if (j->pending() == 200) REQUIRE(j->commit());
    }
    REQUIRE(j->commit());
  }
  OtherConnection db(dir.db());
  if (db.exec("SELECT 1 FROM dbstat LIMIT 1") != SQLITE_OK) {
    MESSAGE("dbstat is not compiled in: row size not measured");
    return;
  }
  const auto used = db.queryInt(
      "SELECT sum(pgsize - unused) FROM dbstat WHERE name GLOB 'r_[0-9]*' AND pagetype = 'leaf'");
  const auto cells =
      db.queryInt("SELECT sum(ncell) FROM dbstat WHERE name GLOB 'r_[0-9]*' AND pagetype = 'leaf'");
  REQUIRE(cells == static_cast<std::int64_t>(kRows));
  const double per_row = static_cast<double>(used) / static_cast<double>(kRows);
  MESSAGE("a typical reading: " << per_row << " bytes in its leaf page");
  CHECK(per_row <= 30.0);
}

TEST_CASE(
    "a version 6 journal with rows is upgraded in place: old rows read the same, new "
    "rows take the decimal form") {
  TempDir dir;
  const std::vector<double> old_values = {
      21.37, 0.1, -3.25, 1e-7, 123456.789, 42.0, std::numeric_limits<double>::quiet_NaN(), 0.3};
  {
    auto j = Journal::open(optionsFor(dir));
    j->internSeries(kTemp);
    j->append(0, 1.0, kT0, std::nullopt, TimeReference::kReceive);  // the series row with it
    REQUIRE(j->commit());
  }
  {
    // What version 6 wrote: the value as a REAL, c the reference as is.
    OtherConnection v6(dir.db());
    REQUIRE(v6.exec("BEGIN; DELETE FROM r_0;") == SQLITE_OK);
    sqlite3_stmt* ins = nullptr;
    REQUIRE(sqlite3_prepare_v2(v6.db,
                               "INSERT INTO r_0(seq, s, t, v, d, c, x, k) "
                               "VALUES(?, 0, ?, ?, 5, ?, NULL, 0)",
                               -1, &ins, nullptr) == SQLITE_OK);
    for (size_t i = 0; i < old_values.size(); ++i) {
      sqlite3_bind_int64(ins, 1, static_cast<std::int64_t>(i + 1));
      sqlite3_bind_int64(ins, 2, kT0 + static_cast<Nanos>(i));
      sqlite3_bind_double(ins, 3, old_values[i]);  // NaN binds as NULL
      sqlite3_bind_int64(ins, 4, static_cast<std::int64_t>(i % 2));
      CHECK(sqlite3_step(ins) == SQLITE_DONE);
      sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    REQUIRE(v6.exec("UPDATE meta SET v = 0 WHERE k = 'seq_reserved'; PRAGMA user_version = 6; "
                    "COMMIT;") == SQLITE_OK);
    REQUIRE(v6.queryInt("SELECT count(*) FROM r_0 WHERE c < 0") == 0);
  }
  auto j = Journal::open(optionsFor(dir));
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("PRAGMA user_version") == 8);
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE c >= 0") ==
          static_cast<std::int64_t>(old_values.size()));  // not rewritten
  }
  const std::uint64_t first_new = j->lastSeq() + 1;
  CHECK(first_new == old_values.size() + 1);
  for (size_t i = 0; i < old_values.size(); ++i)
    j->append(0, old_values[i], kT0 + 100 + static_cast<Nanos>(i), kT0,
              static_cast<TimeReference>(i % 2));
  REQUIRE(j->commit());
  j.reset();
  j = Journal::open(optionsFor(dir));
  std::vector<ReadingRecord> out;
  j->read(0, 100, out);
  REQUIRE(out.size() == 2 * old_values.size());
  for (size_t n = 0; n < out.size(); ++n) {
    const size_t i = n % old_values.size();
    CAPTURE(n);
    CHECK(sameBits(out[n].value, old_values[i]));
    CHECK(static_cast<int>(out[n].reference) == static_cast<int>(i % 2));
  }
  OtherConnection other(dir.db());
  // The new rows: c < 0 (their device time kT0 is in whole ms: t holds it in ms), and the
  // decimals 21.37, 0.1, -3.25, 1e-7, 123456.789 and 0.3 have v an integer.
  const std::string new_rows = "FROM r_0 WHERE seq >= " + std::to_string(first_new);
  CHECK(other.queryInt("SELECT count(*) " + new_rows + " AND c < 0") == 8);
  CHECK(other.queryInt("SELECT count(*) " + new_rows +
                       " AND t = " + std::to_string(kT0 / kNanosPerMilli)) == 8);
  CHECK(other.queryInt("SELECT count(*) " + new_rows + " AND v = CAST(v AS INTEGER)") == 7);
  CHECK(other.queryInt("SELECT v FROM r_0 WHERE seq = " + std::to_string(first_new)) == 2137);
}

TEST_CASE("an aggregate's statistics: decimals in a few bytes, every value bit-identical") {
  WindowStats w;
  w.size = 10 * kNanosPerSecond;
  w.start = kT0;
  w.count = 10;
  w.late = 1;
  // pi_bench-like: min and max are readings (two decimals), the average is not a short decimal.
  w.min = 20.13;
  w.max = 24.87;
  w.avg = 22.413333333333334;
  w.p95 = 24.5;
  const std::string blob = detail::encodeWindow(w);
  MESSAGE("default statistics of a window: " << blob.size() << " bytes (version 6: 36)");
  CHECK(blob.size() <= 24);
  WindowStats back;
  REQUIRE(detail::decodeWindow(blob, back));
  CHECK(back.count == 10);
  CHECK(back.late == 1);
  CHECK(back.stats == w.stats);
  for (Stat st : {Stat::kMin, Stat::kMax, Stat::kAvg, Stat::kP95})
    CHECK(sameBits(back.get(st), w.get(st)));

  // Every statistic, every interesting value (integers, -0.0, NaN, infinities, denormals, ...).
  const std::vector<double> values = interestingValues();
  WindowStats all;
  all.stats = kAllStats;
  all.quantiles = QuantileMode::kCollapsed;
  all.count = 123456789;
  std::vector<Stat> stats;
  for (Stat st : kStatOrder)
    if (st != Stat::kCount) stats.push_back(st);
  for (size_t i = 0; i < values.size(); i += stats.size()) {
    for (size_t j = 0; j < stats.size(); ++j) all.set(stats[j], values[(i + j) % values.size()]);
    const std::string b = detail::encodeWindow(all);
    WindowStats r;
    REQUIRE(detail::decodeWindow(b, r));
    CHECK(r.quantiles == QuantileMode::kCollapsed);
    CHECK(r.count == all.count);
    for (Stat st : stats) {
      CAPTURE(all.get(st));
      CHECK(sameBits(r.get(st), all.get(st)));
    }
    // Cut short anywhere: not decoded.
    for (size_t cut = 0; cut < b.size(); ++cut)
      CHECK_FALSE(detail::decodeWindow(std::string_view(b).substr(0, cut), r));
  }

  // The version 6 form (8-byte doubles, no flag) still decodes.
  std::string old;
  std::uint64_t v = w.stats;
  for (; v >= 0x80; v >>= 7) old += static_cast<char>(v | 0x80);
  old += static_cast<char>(v);
  old += static_cast<char>(10);  // count
  old += static_cast<char>(1);   // late
  old += static_cast<char>(0);   // quantiles
  for (double x : {w.min, w.max, w.avg, w.p95}) {
    const auto bits = std::bit_cast<std::uint64_t>(x);
    for (int i = 0; i < 8; ++i) old += static_cast<char>(bits >> (8 * i));
  }
  CHECK(old.size() == 36);
  REQUIRE(detail::decodeWindow(old, back));
  for (Stat st : {Stat::kMin, Stat::kMax, Stat::kAvg, Stat::kP95})
    CHECK(sameBits(back.get(st), w.get(st)));
}

TEST_CASE("an aggregate row keeps a window in whole ms as ms; every window reads back exactly") {
  TempDir dir, live;
  std::vector<WindowStats> windows;
  for (int i = 0; i < 4; ++i) {
    WindowStats w;
    w.size = i == 3 ? 1500 : 10 * kNanosPerSecond;  // 1.5 µs: not whole ms
    w.start = kT0 + i * w.size + (i == 2 ? 1 : 0);  // the third starts 1 ns past a ms
    w.count = 7 + static_cast<std::uint64_t>(i);
    w.min = 20.13;
    w.max = -0.0;
    w.avg = 22.413333333333334;
    w.p95 = std::numeric_limits<double>::quiet_NaN();
    windows.push_back(w);
  }
  {
    auto j = Journal::open(optionsFor(dir));
    const SeriesId id = j->internSeries(kTemp);
    for (const WindowStats& w : windows) j->appendAggregate(id, w);
    REQUIRE(j->commit());
  }
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 1 AND c = -1 AND d = 10000") == 2);
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 1 AND c = 0") == 2);
  }
  const auto check = [&](Journal& j) {
    std::vector<ReadingRecord> out;
    j.read(0, 10, out);
    REQUIRE(out.size() == windows.size());
    for (size_t i = 0; i < out.size(); ++i) {
      CAPTURE(i);
      REQUIRE(out[i].kind == RecordKind::kAggregate);
      CHECK(out[i].event_time == windows[i].start);
      CHECK(out[i].window.start == windows[i].start);
      CHECK(out[i].window.size == windows[i].size);
      CHECK(out[i].window.count == windows[i].count);
      for (Stat st : {Stat::kMin, Stat::kMax, Stat::kAvg, Stat::kP95})
        CHECK(sameBits(out[i].window.get(st), windows[i].get(st)));
    }
  };
  check(*Journal::open(optionsFor(dir)));
  {
    auto j = Journal::open(optionsFor(live));
    const SalvageReport rep = salvageInto(dir.db(), *j);
    CHECK(rep.records == windows.size());
    CHECK(rep.undecodable == 0);
  }
  check(*Journal::open(optionsFor(live)));
}
