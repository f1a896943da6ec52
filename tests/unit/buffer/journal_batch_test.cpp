// A group commit of many rows: the journal inserts them several per INSERT statement; every
// row must read back exactly as appended, whatever its kind and position in the batch.
#include <doctest/doctest.h>

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
