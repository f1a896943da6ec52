// Retention runs on the event loop (issue 13: its longest stall ≤ 10 ms), so confirmed rows are
// deleted in bounded steps (design: "Rows below every cursor are deleted in small steps"): a
// group commit or a retention pass empties whole segments of at most 65,536 rows together (at
// least one), and an idle pass deletes at most 2,048 rows of a segment confirmed only in part.
// Nothing confirmed stays for good: the next passes and commits take the rest.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "buffer/journal.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z
const Series kTemp{"press-7", "temperature", {}};

std::unique_ptr<Journal> openJournal(const test::TempDir& dir, std::uint64_t segment_rows) {
  JournalOptions o;
  o.path = dir.path / "state" / "journal.db";
  o.sinks = {"a"};
  o.segment_rows = segment_rows;
  o.clock = [] { return kT0; };
  return Journal::open(o);
}

std::uint64_t addRows(Journal& j, SeriesId id, std::size_t n) {
  std::uint64_t last = 0;
  for (std::size_t i = 0; i < n; ++i) {
    last = j.append(id, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
                    TimeReference::kReceive);
    if (j.pending() >= 5000) REQUIRE(j.commit());
  }
  REQUIRE(j.commit());
  return last;
}

}  // namespace

TEST_CASE("idle, a segment confirmed in part is deleted 2,048 rows per retention pass") {
  test::TempDir dir;
  auto j = openJournal(dir, 100000);  // one segment
  addRows(*j, j->internSeries(kTemp), 10000);
  j->setCursor("a", 9000);
  REQUIRE(j->commit());
  // The first pass sees rows come since the last one: the segment is not whole, nothing goes.
  CHECK(j->enforceRetention(kT0) == 0);
  // Idle from now on: small steps, until everything confirmed is gone.
  std::vector<std::uint64_t> steps;
  for (int i = 0; i < 10; ++i) steps.push_back(j->enforceRetention(kT0));
  CHECK(steps[0] == 2048);  // was 9,000 at once: a ranged DELETE of each page on the loop
  CHECK(steps[1] == 2048);
  CHECK(steps[4] == 9000 - 4 * 2048);
  CHECK(steps[5] == 0);
  CHECK(j->stats().rows == 1000);
  std::vector<ReadingRecord> out;
  j->read(0, 10, out);
  REQUIRE(!out.empty());
  CHECK(out.front().seq == 9001);
}

TEST_CASE("a group commit empties at most 65,536 confirmed rows of whole segments") {
  test::TempDir dir;
  auto j = openJournal(dir, 40000);
  const SeriesId id = j->internSeries(kTemp);
  addRows(*j, id, 130000);  // segments 1..40000, ..80000, ..120000, 120001..
  j->setCursor("a", 125000);
  REQUIRE(j->commit());
  j->append(id, 1, kT0, std::nullopt, TimeReference::kReceive);  // a commit is coming
  CHECK(j->enforceRetention(kT0) == 0);                          // left to the commits
  REQUIRE(j->commit());
  CHECK(j->stats().rows == 90001);  // one segment: two would be 80,000 rows in one step
  j->append(id, 2, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  CHECK(j->stats().rows == 50002);
  j->append(id, 3, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  CHECK(j->stats().rows == 10003);  // the third; 120001.. is not all confirmed
  j->append(id, 4, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  CHECK(j->stats().rows == 10004);
}

TEST_CASE("with nothing pending, a retention pass empties one bounded step of whole segments") {
  test::TempDir dir;
  auto j = openJournal(dir, 40000);
  const SeriesId id = j->internSeries(kTemp);
  addRows(*j, id, 130000);
  j->setCursor("a", 120000);
  REQUIRE(j->commit());
  CHECK(j->enforceRetention(kT0) == 40000);
  CHECK(j->enforceRetention(kT0) == 40000);
  CHECK(j->enforceRetention(kT0) == 40000);
  CHECK(j->enforceRetention(kT0) == 0);
  CHECK(j->stats().rows == 10000);
}
