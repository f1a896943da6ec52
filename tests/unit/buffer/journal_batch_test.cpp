// A group commit of many rows: the journal inserts them several per INSERT statement; every
// row must read back exactly as appended, whatever its kind and position in the batch.
#include <doctest/doctest.h>
#include <fmt/core.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "buffer/journal.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z

struct TempDir : gw::test::TempDir {
  TempDir() : gw::test::TempDir("gw-journal-batch") {}
};

enum class Kind { kReading, kAggregate, kAlert };

struct Expected {
  Kind kind;
  SeriesId series;
  double value;
  Nanos time;
  std::optional<Nanos> device_time;
  TimeReference reference = TimeReference::kReceive;
  WindowStats window;
  std::string alert;
};

/// A journal in `dir` with one sink, "a", and no fsyncs (the batch tests count rows, not syncs).
JournalOptions unsyncedOptions(const TempDir& dir) {
  JournalOptions o;
  o.path = dir.path / "journal.db";
  o.sinks = {"a"};
  o.synchronous = Synchronous::kOff;
  return o;
}

}  // namespace

TEST_CASE("every row of a large mixed group commit reads back as appended, in seq order") {
  TempDir dir;
  JournalOptions o;
  o.path = dir.path / "journal.db";
  o.sinks = {"a"};
  auto j = Journal::open(o);
  const SeriesId a = j->internSeries(Series{"press-7", "temperature", {{"line", "3"}}});
  const SeriesId b = j->internSeries(Series{"press-8", "pressure", {}});

  // Sizes around the rows per statement: 1, 31, 32, 33, 64, 65, 250 rows per commit.
  std::vector<Expected> expected;
  std::uint64_t seq = 0;
  for (const size_t n : {1, 31, 32, 33, 64, 65, 250}) {
    for (size_t i = 0; i < n; ++i) {
      Expected e{};
      e.series = i % 2 ? a : b;
      e.time = kT0 + static_cast<Nanos>(expected.size()) * kNanosPerMilli;
      if (i % 7 == 3) {
        e.kind = Kind::kAggregate;
        e.window.size = 10 * kNanosPerSecond;
        e.window.start = e.time - e.time % e.window.size;
        e.window.count = 100 + i;
        e.window.min = -1.5 * static_cast<double>(i);
        e.window.max = static_cast<double>(i);
        e.window.avg = 0.5;
        e.window.p95 = 0.75;
        e.time = e.window.start;
        CHECK(j->appendAggregate(e.series, e.window) == ++seq);
      } else if (i % 11 == 5) {
        e.kind = Kind::kAlert;
        e.value = 90.0 + static_cast<double>(i);
        e.alert = R"({"rule":"hot","n":)" + std::to_string(expected.size()) + "}";
        CHECK(j->appendAlert(e.series, e.time, e.value, e.alert) == ++seq);
      } else {
        e.kind = Kind::kReading;
        e.value = static_cast<double>(expected.size()) + 0.25;
        if (i % 3 == 0) e.device_time = e.time - 20 * kNanosPerMilli;
        e.reference = i % 2 ? TimeReference::kBroker : TimeReference::kReceive;
        CHECK(j->append(e.series, e.value, e.time, e.device_time, e.reference) == ++seq);
      }
      expected.push_back(e);
    }
    REQUIRE(j->commit());
    CHECK(j->lastSeq() == seq);
  }

  std::vector<ReadingRecord> out;
  j->read(0, expected.size() + 10, out);
  REQUIRE(out.size() == expected.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const Expected& e = expected[i];
    const ReadingRecord& r = out[i];
    INFO("row " << i);
    CHECK(r.seq == i + 1);
    CHECK(r.series == &j->series(e.series));
    CHECK(r.event_time == e.time);
    switch (e.kind) {
      case Kind::kReading:
        CHECK((r.kind == RecordKind::kReading));
        CHECK(r.value == e.value);
        CHECK(r.device_time == e.device_time);
        CHECK((r.reference == e.reference));
        break;
      case Kind::kAggregate:
        CHECK((r.kind == RecordKind::kAggregate));
        CHECK((r.window == e.window));
        break;
      case Kind::kAlert:
        CHECK((r.kind == RecordKind::kAlert));
        CHECK(r.value == e.value);
        CHECK(r.alert == e.alert);
        break;
    }
  }
  std::vector<ReadingRecord> alerts;
  j->readAlerts(0, 1000, alerts);
  size_t n_alerts = 0;
  for (const Expected& e : expected) n_alerts += e.kind == Kind::kAlert;
  CHECK(alerts.size() == n_alerts);
}

// Issue 13: a commit runs on the event loop, ~4 µs of CPU per row; with max_commit_rows a
// backlog of 20,000 pending rows goes in transactions of 1,000 (the old commit() took all
// 20,000 in one). Aggregates, alerts and the state stay together in the commit of the rest.
TEST_CASE("max_commit_rows: readings split off in bounded commits, state with the last one") {
  TempDir dir;
  JournalOptions o = unsyncedOptions(dir);
  o.max_commit_rows = 1000;
  auto j = Journal::open(o);
  const SeriesId a = j->internSeries(Series{"press-7", "temperature", {}});
  auto reading = [&](size_t i) {
    return j->append(a, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
                     TimeReference::kReceive);
  };
  for (size_t i = 1; i <= 20'000; ++i) REQUIRE(reading(i) == i);
  j->putState("windows", "s1");
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == 1000);
  CHECK(j->pending() == 19'000);
  // A sink reads the committed rows and the pending ones after them (up to the seq
  // reservation), in order.
  std::vector<ReadingRecord> out;
  const std::uint64_t through = j->readTail(0, 30'000, out);
  CHECK(through > 1000);
  REQUIRE(out.size() == through);
  for (size_t i = 0; i < out.size(); ++i) {
    INFO("row " << i);
    REQUIRE(out[i].seq == i + 1);
    REQUIRE(out[i].value == static_cast<double>(i + 1));
  }
  // A crash now: the first 1,000 are there, the state is not (it waits for the rest).
  j.reset();
  j = Journal::open(o);
  j->read(0, 30'000, out);
  REQUIRE(out.size() == 1000);
  CHECK(out.back().seq == 1000);
  CHECK_FALSE(j->state("windows").has_value());

  // Seqs go on after the reservation (a gap after a crash).
  const std::uint64_t base = j->lastSeq();
  for (size_t i = 1; i <= 19'000; ++i) REQUIRE(reading(i) == base + i);
  j->putState("windows", "s2");
  size_t commits = 0;
  while (j->pending() > 0) {
    REQUIRE(j->commit());
    ++commits;
    REQUIRE(commits <= 19);
  }
  CHECK(commits == 19);
  CHECK(j->lastSeq() == base + 19'000);

  // An aggregate stops the split: readings before it go alone, it goes with the rest.
  const std::uint64_t base2 = j->lastSeq();
  for (size_t i = 1; i <= 1500; ++i) reading(i);
  WindowStats w;
  w.size = 10 * kNanosPerSecond;
  w.start = kT0 - kT0 % w.size;
  w.count = 3;
  CHECK(j->appendAggregate(a, w) == base2 + 1501);
  for (size_t i = 1502; i <= 3000; ++i) reading(i);
  j->putState("windows", "s3");
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == base2 + 1000);
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == base2 + 1500);  // the readings before the aggregate
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == base2 + 3000);  // the aggregate, 1,499 readings after it and the state
  CHECK(j->pending() == 0);
  j.reset();
  j = Journal::open(o);
  CHECK(*j->state("windows") == "s3");
  j->read(base2 + 1500, 1, out);
  REQUIRE(out.size() == 1);
  CHECK((out[0].kind == RecordKind::kAggregate));
  CHECK(out[0].seq == base2 + 1501);
}

// The time bound (commit_budget): a budget that is always spent stops every commit after its
// first statement of 32 rows; every row is written once, in order, state with the last.
TEST_CASE("commit_budget: a spent budget splits readings at statement ends, none twice") {
  TempDir dir;
  JournalOptions o = unsyncedOptions(dir);
  o.commit_budget = 1;  // 1 ns: spent by the first statement
  auto j = Journal::open(o);
  const SeriesId a = j->internSeries(Series{"press-7", "temperature", {}});
  for (size_t i = 1; i <= 1000; ++i)
    REQUIRE(j->append(a, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
                      TimeReference::kReceive) == i);
  j->putState("windows", "s1");
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == 32);
  size_t commits = 1;
  while (j->pending() > 0) {
    REQUIRE(j->commit());
    REQUIRE(++commits <= 40);
  }
  CHECK(commits == 32);  // 31 of 32 rows, then the last 8
  CHECK(j->lastSeq() == 1000);
  j.reset();
  j = Journal::open(o);
  CHECK(*j->state("windows") == "s1");
  std::vector<ReadingRecord> out;
  j->read(0, 2000, out);
  REQUIRE(out.size() == 1000);
  for (size_t i = 0; i < out.size(); ++i) {
    INFO("row " << i);
    REQUIRE(out[i].seq == i + 1);
    REQUIRE(out[i].value == static_cast<double>(i + 1));
  }
}

// An alert row pending: the reading just before it (the one that triggered it: alerts are not
// rebuilt from the journal after a restart) goes with it, the readings before that one are
// split off as usual (issue 13; before, no split at all while an alert row was pending: a
// burst of alerts made one commit of every pending row).
TEST_CASE("max_commit_rows: an alert row goes with the reading before it, earlier ones split") {
  TempDir dir;
  JournalOptions o = unsyncedOptions(dir);
  o.max_commit_rows = 100;
  auto j = Journal::open(o);
  const SeriesId a = j->internSeries(Series{"press-7", "temperature", {}});
  for (size_t i = 1; i <= 500; ++i)
    j->append(a, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
              TimeReference::kReceive);
  j->appendAlert(a, kT0 + 500, 500, R"({"rule":"hot"})");
  for (size_t i = 502; i <= 550; ++i)
    j->append(a, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
              TimeReference::kReceive);
  std::vector<std::uint64_t> last;
  while (j->pending() > 0) {
    REQUIRE(j->commit());
    last.push_back(j->lastSeq());
    REQUIRE(last.size() <= 10);
    // A crash never leaves reading 500 without its alert (501).
    if (j->lastSeq() >= 500) CHECK(j->lastSeq() >= 501);
  }
  CHECK(last == std::vector<std::uint64_t>{100, 200, 300, 400, 499, 550});
  std::vector<ReadingRecord> out;
  j->readAlerts(0, 10, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 501);
}

namespace {

Nanos threadCpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<Nanos>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

Series plantSeries(size_t i) {
  return Series{fmt::format("pump-{:06}", i), "temp", {{"line", fmt::format("line{}", i % 8)}}};
}

}  // namespace

// Issue 13: new series rows are written within the commit budget too, series first. A spent
// budget (1 ns) writes 32 series per commit and only the readings whose series are written by
// then; a crash between two such commits leaves no reading without its series row. (Before, a
// commit wrote every new series, here 10,000 at once.)
TEST_CASE("commit_budget: new series rows split over commits, readings only after their series") {
  TempDir dir;
  JournalOptions o = unsyncedOptions(dir);
  o.commit_budget = 1;  // spent by the first statement
  auto j = Journal::open(o);
  constexpr size_t kSeries = 10'000;
  for (size_t i = 0; i < kSeries; ++i) {
    const SeriesId id = j->internSeries(plantSeries(i));
    REQUIRE(id == i);
    // Every series' reading, and every 100th an old series' again (interleaved ids).
    j->append(id, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
              TimeReference::kReceive);
    if (i % 100 == 99)
      j->append(id - 50, -1.0, kT0 + static_cast<Nanos>(i), std::nullopt, TimeReference::kReceive);
  }
  const size_t total = j->pending();
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == 32);  // the readings of series 0..31, the first after them refers to 32
  CHECK(j->pending() == total - 32);

  // A crash now: 32 series rows, the 32 readings, nothing that refers to a missing series.
  j.reset();
  j = Journal::open(o);
  std::vector<ReadingRecord> out;
  j->read(0, 2 * total, out);
  REQUIRE(out.size() == 32);
  for (size_t i = 0; i < out.size(); ++i) CHECK(out[i].series->device == plantSeries(i).device);
  CHECK(j->internSeries(plantSeries(5)) == 5);
  CHECK(j->internSeries(plantSeries(7777)) == 32);  // the next id: series 32.. were not written
  CHECK(j->internSeries(plantSeries(32)) == 33);
}

// The same at plant scale with the gateway's settings (max_commit_rows, a 2 ms budget): the
// first flood's 100,000 new series go in many commits, each of bounded CPU (before: the first
// commit wrote all 100,000 series rows, ~0.5 s of CPU), and every row reads back with its series.
TEST_CASE("commit_budget: 100,000 new series take many commits, each within the budget") {
  TempDir dir;
  JournalOptions o = unsyncedOptions(dir);
  o.max_commit_rows = 2000;
  o.commit_budget = 2 * kNanosPerMilli;
  o.expected_series = 1 << 17;
  auto j = Journal::open(o);
  constexpr size_t kSeries = 100'000;
  for (size_t i = 0; i < kSeries; ++i)
    j->append(j->internSeries(plantSeries(i)), static_cast<double>(i), kT0 + static_cast<Nanos>(i),
              std::nullopt, TimeReference::kReceive);
  j->putState("windows", "w");
  size_t commits = 0;
  Nanos max_cpu = 0, all_cpu = 0;
  while (j->pending() > 0) {
    const Nanos cpu = threadCpu();
    REQUIRE(j->commit());
    max_cpu = std::max(max_cpu, threadCpu() - cpu);
    all_cpu += threadCpu() - cpu;
    REQUIRE(++commits <= kSeries);
  }
  INFO("commits " << commits << ", longest " << max_cpu / 1000 << " us of CPU of "
                  << all_cpu / 1000);
  // At least one commit per max_commit_rows; more when the budget cuts them shorter (a slower
  // machine). What the old code got wrong is the first commit's CPU, checked below.
  CHECK(commits >= kSeries / 2000);
  // The budget, a last statement of 32 rows and the COMMIT's own work: no commit takes a large
  // share of the whole (the old code's first commit wrote every series row: ~40 % of it). A
  // share, not a time, so that a sanitizer build (several times slower) checks the same.
  CHECK(max_cpu * 10 < all_cpu);
  j.reset();
  j = Journal::open(o);
  CHECK(*j->state("windows") == "w");
  std::vector<ReadingRecord> out;
  j->read(0, 2 * kSeries, out);
  REQUIRE(out.size() == kSeries);
  for (size_t i = 0; i < out.size(); i += 997) {
    INFO("row " << i);
    CHECK(out[i].series->device == plantSeries(i).device);
    CHECK(out[i].value == static_cast<double>(i));
  }
  CHECK(j->internSeries(plantSeries(kSeries)) == kSeries);
}
