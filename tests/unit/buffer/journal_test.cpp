#include "buffer/journal.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "buffer/salvage.h"
#include "tests/support/sqlite_connection.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z
constexpr Nanos kMinute = 60 * kNanosPerSecond;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "gw-journal-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path db() const { return path / "state" / "journal.db"; }
};

struct FakeClock {
  Nanos now = kT0;
};

JournalOptions optionsFor(const TempDir& dir, std::vector<std::string> sinks = {"a", "b"},
                          FakeClock* clock = nullptr) {
  JournalOptions o;
  o.path = dir.db();
  o.sinks = std::move(sinks);
  if (clock) o.clock = [clock] { return clock->now; };
  return o;
}

JournalOptions withSegments(JournalOptions o, std::uint64_t rows) {
  o.segment_rows = rows;
  return o;
}

const Series kTemp{"press-7", "temperature", {{"line", "3"}, {"cell", "A"}}};
const Series kPressure{"press-7", "pressure", {}};

// Commits `n` rows of series `id`, values seq-like, returns the last seq.
std::uint64_t addRows(Journal& j, SeriesId id, size_t n, size_t batch = 1000) {
  std::uint64_t last = 0;
  for (size_t i = 0; i < n; ++i) {
    last = j.append(id, static_cast<double>(i) + 0.25, kT0 + static_cast<Nanos>(i) * kNanosPerMilli,
                    kT0 + static_cast<Nanos>(i) * kNanosPerMilli - 20 * kNanosPerMilli,
                    TimeReference::kReceive);
    if (j.pending() >= batch) REQUIRE(j.commit());
  }
  REQUIRE(j.commit());
  return last;
}

std::vector<std::uint64_t> seqs(Journal& j, std::uint64_t after = 0, size_t limit = 1000000) {
  std::vector<ReadingRecord> out;
  j.read(after, limit, out);
  std::vector<std::uint64_t> s;
  for (const auto& r : out) s.push_back(r.seq);
  return s;
}

std::string fileBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

using OtherConnection = gw::test::SqliteConnection;

}  // namespace

TEST_CASE("append, commit and read round-trip") {
  TempDir dir;
  auto j = Journal::open(optionsFor(dir));
  CHECK(fs::exists(dir.db()));  // the parent directory was created
  const SeriesId temp = j->internSeries(kTemp);
  const SeriesId pressure = j->internSeries(kPressure);
  CHECK(temp != pressure);
  CHECK(j->internSeries(Series{kTemp}) == temp);
  CHECK(j->series(temp) == kTemp);

  constexpr Nanos kMin = std::numeric_limits<Nanos>::min();
  CHECK(j->append(temp, 21.5, kT0, kT0 - 1234, TimeReference::kBroker) == 1);
  CHECK(j->append(pressure, -3.0, kT0 + 1, std::nullopt, TimeReference::kReceive) == 2);
  CHECK(j->append(temp, std::nan(""), kT0 + 2, 0, TimeReference::kReceive) == 3);  // 1970 clock
  CHECK(j->append(pressure, 1e300, kT0 + 3, kMin, TimeReference::kBroker) == 4);
  CHECK(j->pending() == 4);

  std::vector<ReadingRecord> out{ReadingRecord{}};
  j->read(0, 10, out);
  CHECK(out.empty());  // nothing committed yet
  CHECK(j->stats().last_seq == 0);

  REQUIRE(j->commit());
  CHECK(j->pending() == 0);
  j->read(0, 10, out);
  REQUIRE(out.size() == 4);
  CHECK(out[0].seq == 1);
  CHECK(out[0].series == &j->series(temp));
  CHECK(*out[0].series == kTemp);
  CHECK(out[0].value == 21.5);
  CHECK(out[0].event_time == kT0);
  CHECK(out[0].device_time == kT0 - 1234);
  CHECK(std::string(toString(out[0].reference)) == toString(TimeReference::kBroker));
  CHECK(out[1].seq == 2);
  CHECK(*out[1].series == kPressure);
  CHECK(out[1].value == -3.0);
  CHECK_FALSE(out[1].device_time.has_value());
  CHECK(std::string(toString(out[1].reference)) == toString(TimeReference::kReceive));
  CHECK(std::isnan(out[2].value));
  CHECK(out[2].device_time == 0);
  CHECK(out[3].value == 1e300);
  CHECK(out[3].device_time == kMin);

  CHECK(seqs(*j, 2, 1) == std::vector<std::uint64_t>{3});
  CHECK(seqs(*j, 4).empty());
  CHECK(seqs(*j, 0, 0).empty());

  const JournalStats s = j->stats();
  CHECK(s.last_seq == 4);
  CHECK(s.rows == 4);
  CHECK(s.commits == 1);
  CHECK(s.file_bytes > 0);
  CHECK(s.used_bytes > 0);
  CHECK_FALSE(s.moved_aside.has_value());
  REQUIRE(s.sinks.size() == 2);
  CHECK(s.sinks.at("a").backlog == 4);
  CHECK(s.sinks.at("a").oldest_unsent.has_value());

  CHECK(j->commit());  // nothing to do
  CHECK(j->stats().commits == 1);
}

TEST_CASE("series objects keep their address while more are interned") {
  TempDir dir;
  auto j = Journal::open(optionsFor(dir));
  const SeriesId first = j->internSeries(kTemp);
  const gw::InternedSeries* p = &j->series(first);
  for (int i = 0; i < 20000; ++i)
    j->internSeries(Series{"dev" + std::to_string(i), "m", {{"k", std::to_string(i)}}});
  CHECK(&j->series(first) == p);
  CHECK(j->internSeries(Series{"dev19999", "m", {{"k", "19999"}}}) == 20000);
  REQUIRE(j->commit());
}

TEST_CASE("seqs and series ids survive a reopen, also when every row was deleted") {
  TempDir dir;
  SeriesId temp = 0, pressure = 0;
  {
    auto j = Journal::open(optionsFor(dir));
    temp = j->internSeries(kTemp);
    pressure = j->internSeries(kPressure);
    j->append(temp, 1, kT0, std::nullopt, TimeReference::kReceive);
    j->append(pressure, 2, kT0, std::nullopt, TimeReference::kReceive);
    j->append(temp, 3, kT0, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
  }
  {
    auto j = Journal::open(optionsFor(dir));
    CHECK(j->stats().last_seq == 3);
    CHECK(j->stats().rows == 3);
    CHECK(j->internSeries(kPressure) == pressure);
    CHECK(j->internSeries(kTemp) == temp);
    const SeriesId other = j->internSeries(Series{"press-8", "temperature", {{"line", "4"}}});
    CHECK(other == 2);
    CHECK(j->append(other, 4, kT0, std::nullopt, TimeReference::kReceive) == 4);
    REQUIRE(j->commit());
    std::vector<ReadingRecord> out;
    j->read(0, 10, out);
    REQUIRE(out.size() == 4);
    CHECK(*out[1].series == kPressure);
    CHECK(out[3].series->tags == std::vector<std::pair<std::string, std::string>>{{"line", "4"}});
    // Both sinks confirm everything: retention empties the table.
    j->setCursor("a", 4);
    j->setCursor("b", 4);
    REQUIRE(j->commit());
    CHECK(j->enforceRetention(kT0) == 4);
    CHECK(j->stats().rows == 0);
  }
  {
    auto j = Journal::open(optionsFor(dir));
    CHECK(j->stats().last_seq == 4);
    CHECK(j->stats().rows == 0);
    CHECK(j->cursor("a") == 4);
    CHECK(j->series(2).device == "press-8");
    CHECK(j->append(temp, 5, kT0, std::nullopt, TimeReference::kReceive) == 5);
    REQUIRE(j->commit());
    CHECK(seqs(*j) == std::vector<std::uint64_t>{5});
  }
}

TEST_CASE("cursors are per sink, only move forward, and persist with a commit") {
  TempDir dir;
  {
    auto j = Journal::open(withSegments(optionsFor(dir), 5));
    addRows(*j, j->internSeries(kTemp), 10, 5);  // segments 1..5, 6..10
    j->setCursor("a", 5);
    j->setCursor("a", 3);  // back: ignored
    j->setCursor("b", 2);
    j->setCursor("nobody", 7);  // not configured: ignored
    CHECK(j->cursor("a") == 5);
    CHECK(j->cursor("b") == 2);
    CHECK(j->cursor("nobody") == 0);
    const auto commits = j->stats().commits;
    REQUIRE(j->commit());  // cursor moves alone are a commit
    CHECK(j->stats().commits == commits + 1);
    const JournalStats s = j->stats();
    CHECK(s.sinks.at("a").backlog == 5);
    CHECK(s.sinks.at("b").backlog == 8);
    CHECK(s.sinks.count("nobody") == 0);
    j->setCursor("b", 9);  // not committed: lost on close
  }
  {
    auto j = Journal::open(withSegments(optionsFor(dir), 5));
    CHECK(j->cursor("a") == 5);
    CHECK(j->cursor("b") == 2);
  }
  {
    // "b" not configured: its row is kept but ignored; "c" is new.
    auto j = Journal::open(withSegments(optionsFor(dir, {"a", "c"}), 5));
    CHECK(j->cursor("b") == 0);
    CHECK(j->cursor("c") == 0);  // starts at the oldest row still buffered
    CHECK(j->stats().sinks.count("b") == 0);
    j->setCursor("c", 10);
    REQUIRE(j->commit());
    CHECK(j->enforceRetention(kT0) == 5);  // "a" holds rows 6..10 back, "b" nothing
  }
  {
    auto j = Journal::open(withSegments(optionsFor(dir, {"a", "b", "c"}), 5));
    CHECK(j->cursor("a") == 5);
    CHECK(j->cursor("c") == 10);
    // Rows 3..5 went while "b" was not configured: counted as dropped for it.
    CHECK(j->cursor("b") == 5);
    CHECK(j->stats().sinks.at("b").dropped == 3);
    CHECK(j->stats().sinks.at("a").dropped == 0);
  }
}

TEST_CASE("retention deletes whole segments once every sink confirmed all of their rows") {
  TempDir dir;
  JournalOptions o = optionsFor(dir);
  o.segment_rows = 10;
  auto j = Journal::open(o);
  addRows(*j, j->internSeries(kTemp), 100, 10);  // segments of 10 rows: 1..10, 11..20, ...
  CHECK(j->enforceRetention(kT0) == 0);          // no sink confirmed anything
  j->setCursor("a", 60);
  j->setCursor("b", 45);
  addRows(*j, 0, 10, 10);  // 101..110: rows keep coming
  // Uncommitted cursor moves count too (they are written with the deletion). 41..45 stay until
  // their segment is confirmed whole.
  CHECK(j->enforceRetention(kT0, 15) == 40);
  CHECK(j->stats().rows == 70);
  const auto left = seqs(*j);
  REQUIRE(left.size() == 70);
  CHECK(left.front() == 41);
  CHECK(left.back() == 110);
  addRows(*j, 0, 10, 10);  // 111..120
  CHECK(j->enforceRetention(kT0) == 0);
  CHECK(j->stats().sinks.at("a").dropped == 0);
  CHECK(j->stats().sinks.at("b").dropped == 0);
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("SELECT count(*) FROM r_0") == 0);  // emptied, kept for reuse
    CHECK(other.queryInt("SELECT min(seq) FROM r_4") == 41);
  }
  // No row since the last pass (idle): the confirmed rows go row by row.
  CHECK(j->enforceRetention(kT0) == 5);
  CHECK(seqs(*j).front() == 46);
  CHECK(j->enforceRetention(kT0) == 0);

  // A reopen finds the segments (and the spare tables) as they were.
  j.reset();
  j = Journal::open(o);
  CHECK(j->stats().rows == 75);
  std::vector<ReadingRecord> out;
  j->read(55, 12, out);  // across segments, in seq order
  REQUIRE(out.size() == 12);
  for (size_t i = 0; i < out.size(); ++i) CHECK(out[i].seq == 56 + i);

  j->setCursor("a", 120);
  j->setCursor("b", 120);
  CHECK(j->enforceRetention(kT0) == 75);  // the newest segment too, when all of it is confirmed
  CHECK(j->stats().rows == 0);
  CHECK(j->stats().last_seq == 120);
  // Emptied tables are reused, at most two kept spare: the schema does not grow.
  for (int round = 0; round < 5; ++round) {
    const std::uint64_t last = addRows(*j, 0, 100, 10);
    j->setCursor("a", last);
    j->setCursor("b", last);
    CHECK(j->enforceRetention(kT0) == 100);
  }
  CHECK(j->stats().last_seq == 620);
  CHECK(OtherConnection(dir.db()).queryInt(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name GLOB 'r_*'") <= 3);
}

TEST_CASE("the size cap drops the oldest unsent rows and counts them per sink") {
  TempDir dir;
  JournalOptions o = optionsFor(dir);
  o.max_size_bytes = 256 << 10;
  std::uint64_t floor = 0;
  {
    auto j = Journal::open(o);
    addRows(*j, j->internSeries(kTemp), 20000);
    j->setCursor("a", 3000);
    REQUIRE(j->commit());
    const JournalStats before = j->stats();
    CHECK(before.used_bytes > o.max_size_bytes);

    const std::uint64_t removed = j->enforceRetention(kT0);
    const JournalStats s = j->stats();
    CHECK(removed > 3000);
    CHECK(s.used_bytes <= o.max_size_bytes / 10 * 9);
    CHECK(s.used_bytes > o.max_size_bytes / 2);  // did not drop far more than needed
    CHECK(s.last_seq == 20000);
    CHECK(s.rows == 20000 - removed);
    floor = 20000 - s.rows;
    CHECK(s.sinks.at("a").dropped == floor - 3000);
    CHECK(s.sinks.at("b").dropped == floor);
    CHECK(s.sinks.at("a").cursor == floor);
    CHECK(s.sinks.at("b").cursor == floor);
    CHECK(seqs(*j, 0, 1) == std::vector<std::uint64_t>{floor + 1});
    CHECK(j->enforceRetention(kT0) == 0);  // under the cap now
    // A late confirmation from before the drop does not move the cursor back.
    j->setCursor("b", 10);
    CHECK(j->cursor("b") == floor);
  }
  auto j = Journal::open(o);
  CHECK(j->stats().sinks.at("a").dropped == floor - 3000);
  CHECK(j->stats().sinks.at("b").dropped == floor);
  CHECK(j->cursor("b") == floor);
}

TEST_CASE("the age cap is by commit time, not event time") {
  TempDir dir;
  FakeClock clock;
  JournalOptions o = optionsFor(dir, {"a"}, &clock);
  o.max_age = 60 * kMinute;
  auto j = Journal::open(o);
  const SeriesId id = j->internSeries(kTemp);
  // A sensor whose clock says 1970.
  for (int i = 0; i < 10; ++i) j->append(id, i, i, i, TimeReference::kReceive);
  REQUIRE(j->commit());  // at T0
  clock.now = kT0 + 30 * kMinute;
  for (int i = 0; i < 10; ++i) j->append(id, i, clock.now, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  clock.now += 5 * kNanosPerSecond;  // within the granularity: same commit-time group
  for (int i = 0; i < 5; ++i) j->append(id, i, clock.now, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());

  CHECK(j->stats().sinks.at("a").oldest_unsent == kT0);
  CHECK(j->enforceRetention(kT0 + 50 * kMinute) == 0);
  CHECK(j->enforceRetention(kT0 + 60 * kMinute) == 0);  // not certainly older yet
  CHECK(j->enforceRetention(kT0 + 60 * kMinute + kCommitTimeGranularity + 1) == 10);
  JournalStats s = j->stats();
  CHECK(s.rows == 15);
  CHECK(s.sinks.at("a").dropped == 10);
  CHECK(s.sinks.at("a").cursor == 10);
  CHECK(s.sinks.at("a").oldest_unsent == kT0 + 30 * kMinute);

  // The clock steps back: commit times stay ordered (recorded at the last group's time).
  clock.now = kT0 - 100 * kMinute;
  for (int i = 0; i < 5; ++i) j->append(id, i, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  CHECK(j->enforceRetention(kT0 + 90 * kMinute + kCommitTimeGranularity + 1) == 20);
  s = j->stats();
  CHECK(s.rows == 0);
  CHECK(s.sinks.at("a").dropped == 30);
  CHECK_FALSE(s.sinks.at("a").oldest_unsent.has_value());
}

TEST_CASE("a failed commit keeps everything pending") {
  TempDir dir;

  SUBCASE("another process holds the write lock") {
    SeriesId temp = 0, other = 0;
    {
      auto j = Journal::open(optionsFor(dir));
      temp = j->internSeries(kTemp);
      addRows(*j, temp, 5);
      {
        OtherConnection lock(dir.db());
        REQUIRE(lock.exec("BEGIN IMMEDIATE") == SQLITE_OK);
        other = j->internSeries(kPressure);
        CHECK(j->append(other, 6, kT0, std::nullopt, TimeReference::kReceive) == 6);
        CHECK(j->append(temp, 7, kT0, std::nullopt, TimeReference::kReceive) == 7);
        j->setCursor("a", 5);
        CHECK_FALSE(j->commit());
        CHECK(j->pending() == 2);
        CHECK(j->stats().last_seq == 5);
        CHECK(seqs(*j, 5).empty());
        CHECK(j->append(temp, 8, kT0, std::nullopt, TimeReference::kReceive) == 8);
        CHECK_FALSE(j->commit());
        REQUIRE(lock.exec("COMMIT") == SQLITE_OK);
      }
      REQUIRE(j->commit());
      CHECK(j->pending() == 0);
      std::vector<ReadingRecord> out;
      j->read(5, 10, out);
      REQUIRE(out.size() == 3);
      CHECK(out[0].seq == 6);
      CHECK(*out[0].series == kPressure);
      CHECK(out[2].seq == 8);
      CHECK(out[2].value == 8);
      // The cursor move rides with row commits at most once a second; as at stop, a commit
      // without rows writes it.
      REQUIRE(j->commit());
    }
    auto j = Journal::open(optionsFor(dir));
    CHECK(j->stats().last_seq == 8);
    CHECK(j->cursor("a") == 5);
    CHECK(j->internSeries(kPressure) == other);
  }

  SUBCASE("the hard size stop is reached, retention makes room") {
    JournalOptions o = optionsFor(dir);
    o.max_size_bytes = 64 << 10;  // hard stop at ~1.1 MiB
    auto j = Journal::open(o);
    const SeriesId id = j->internSeries(kTemp);
    bool failed = false;
    std::uint64_t next = 1;
    for (int batch = 0; batch < 200 && !failed; ++batch) {
      for (int i = 0; i < 1000; ++i)
        CHECK(j->append(id, i, kT0, std::nullopt, TimeReference::kReceive) == next++);
      failed = !j->commit();
    }
    REQUIRE(failed);
    CHECK(j->pending() == 1000);
    const std::uint64_t committed = j->stats().last_seq;
    CHECK(committed == next - 1001);
    CHECK(j->enforceRetention(kT0) > 0);
    REQUIRE(j->commit());
    CHECK(j->stats().last_seq == next - 1);
    const auto left = seqs(*j);
    REQUIRE_FALSE(left.empty());
    CHECK(left.back() == next - 1);
    CHECK(left.back() - left.front() + 1 == left.size());  // contiguous
  }
}

TEST_CASE("a corrupt journal is moved aside and a new one started") {
  TempDir dir;
  const auto checkFresh = [&](Journal& j) {
    const JournalStats s = j.stats();
    REQUIRE(s.moved_aside.has_value());
    CHECK(s.moved_aside->parent_path() == dir.db().parent_path());
    CHECK(s.moved_aside->filename().string().rfind("journal.db.corrupt-", 0) == 0);
    CHECK(fs::exists(*s.moved_aside));
    CHECK(s.last_seq == 0);
    const SeriesId id = j.internSeries(kTemp);
    CHECK(j.append(id, 1, kT0, std::nullopt, TimeReference::kReceive) == 1);
    REQUIRE(j.commit());
    CHECK(seqs(j) == std::vector<std::uint64_t>{1});
  };

  SUBCASE("garbage bytes") {
    fs::create_directories(dir.db().parent_path());
    std::string garbage;
    for (int i = 0; i < 8192; ++i) garbage += static_cast<char>((i * 7919) % 251);
    std::ofstream(dir.db(), std::ios::binary) << garbage;
    std::ofstream(fs::path(dir.db()) += "-wal", std::ios::binary) << "not a wal";
    auto j = Journal::open(optionsFor(dir));
    checkFresh(*j);
    CHECK(fileBytes(*j->stats().moved_aside) == garbage);
    CHECK(fileBytes(fs::path(*j->stats().moved_aside) += "-wal") == "not a wal");
  }

  SUBCASE("a truncated journal") {
    {
      auto j = Journal::open(optionsFor(dir));
      addRows(*j, j->internSeries(kTemp), 20000);
    }
    CHECK_FALSE(fs::exists(fs::path(dir.db()) += "-wal"));  // checkpointed on close
    const auto size = fs::file_size(dir.db());
    fs::resize_file(dir.db(), size / 2);
    auto j = Journal::open(optionsFor(dir));
    checkFresh(*j);
    CHECK(fs::file_size(*j->stats().moved_aside) == size / 2);
  }

  SUBCASE("another application's database") {
    {
      fs::create_directories(dir.db().parent_path());
      OtherConnection other(dir.db());
      REQUIRE(other.exec("CREATE TABLE t(x); INSERT INTO t VALUES(42);") == SQLITE_OK);
    }
    auto j = Journal::open(optionsFor(dir));
    checkFresh(*j);
    OtherConnection moved(*j->stats().moved_aside);
    CHECK(moved.queryInt("SELECT x FROM t") == 42);
  }

  SUBCASE("an empty file is a new journal, nothing to move") {
    fs::create_directories(dir.db().parent_path());
    std::ofstream(dir.db(), std::ios::binary).flush();
    auto j = Journal::open(optionsFor(dir));
    CHECK_FALSE(j->stats().moved_aside.has_value());
  }
}

TEST_CASE("open throws when no journal can be created at all") {
  TempDir dir;
  std::ofstream(dir.path / "file") << "x";
  JournalOptions o;
  o.path = dir.path / "file" / "journal.db";  // the parent is a regular file
  CHECK_THROWS_AS(Journal::open(o), JournalError);
  o.path = dir.path;  // a directory
  CHECK_THROWS_AS(Journal::open(o), JournalError);
}

// Appends kRows realistic readings in batches of kBatch; returns rows/s.
double fillForBench(const JournalOptions& o, size_t rows, size_t batch) {
  auto j = Journal::open(o);
  std::vector<SeriesId> ids;
  for (int d = 0; d < 20; ++d)
    for (const char* m : {"temperature", "pressure", "vibration", "current", "voltage"})
      ids.push_back(j->internSeries(Series{"press-" + std::to_string(d), m, {{"line", "3"}}}));
  // Two decimals, a 1 ms cadence with jitter, devices 5-40 ms behind, a quarter broker-stamped.
  const Nanos start = monoNow();
  for (size_t i = 0; i < rows; ++i) {
    const Nanos t = kT0 + static_cast<Nanos>(i) * kNanosPerMilli + static_cast<Nanos>(i % 997);
    j->append(ids[i % ids.size()], 20.0 + static_cast<double>(i % 1000) / 100.0, t,
              t - static_cast<Nanos>(5 + i % 36) * kNanosPerMilli,
              i % 4 == 0 ? TimeReference::kBroker : TimeReference::kReceive);
    if (j->pending() == batch) REQUIRE(j->commit());
  }
  REQUIRE(j->commit());
  const Nanos elapsed = monoNow() - start;
  CHECK(j->stats().rows == rows);
  return static_cast<double>(rows) * kNanosPerSecond / static_cast<double>(elapsed);
}

TEST_CASE("bytes per row and commit throughput") {
  constexpr size_t kRows = 100000, kBatch = 500;
  TempDir dir;
  JournalOptions normal_options = optionsFor(dir);
  normal_options.synchronous = Synchronous::kNormal;
  const double normal = fillForBench(normal_options, kRows, kBatch);
  const double file_per_row = static_cast<double>(fs::file_size(dir.db())) / kRows;
  double table_per_row = -1, payload_per_row = -1;
  {
    OtherConnection db(dir.db());
    if (db.exec("SELECT 1 FROM dbstat LIMIT 1") == SQLITE_OK) {  // dbstat is compiled in
      table_per_row = static_cast<double>(db.queryInt(
                          "SELECT sum(pgsize) FROM dbstat WHERE name GLOB 'r_[0-9]*'")) /
                      kRows;
      payload_per_row = static_cast<double>(db.queryInt(
                            "SELECT sum(payload) FROM dbstat WHERE name GLOB 'r_[0-9]*'")) /
                        kRows;
    }
  }
  TempDir dir_full;
  JournalOptions full = optionsFor(dir_full);
  full.synchronous = Synchronous::kFull;
  const double full_rate = fillForBench(full, kRows / 5, kBatch);
  MESSAGE("journal: " << kRows << " rows: file " << file_per_row << " B/row, segment tables "
                      << table_per_row << " B/row (record payload " << payload_per_row
                      << " B/row); commit throughput in batches of " << kBatch << ": "
                      << static_cast<std::int64_t>(normal) << " rows/s synchronous=NORMAL, "
                      << static_cast<std::int64_t>(full_rate) << " rows/s FULL");
  CHECK(file_per_row < 50);
}

TEST_CASE("aggregates and alerts are records in the same seq space, read back exactly") {
  TempDir dir;
  auto j = Journal::open(optionsFor(dir));
  const SeriesId t = j->internSeries(kTemp);
  j->append(t, 21.5, kT0, std::nullopt, TimeReference::kBroker);
  WindowStats w;
  w.size = 10 * kNanosPerSecond;
  w.start = kT0 - kT0 % w.size;
  w.count = 12345;
  w.late = 3;
  w.stats = kDefaultStats | Stat::kStddev | Stat::kLast;
  w.quantiles = QuantileMode::kSketch;
  w.min = -40.25;
  w.max = 1e300;
  w.avg = std::nextafter(21.5, 22.0);
  w.p95 = 0.1;
  w.stddev = 2.5;
  w.last = -0.0;
  CHECK(j->appendAggregate(t, w) == 2);
  const std::string alert = R"({"rule":"hot","state":"firing"})";
  CHECK(j->appendAlert(t, kT0 + 5, 91.25, alert) == 3);
  j->append(t, 22.5, kT0 + 1, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == 4);

  // Reuse a vector holding other kinds, as a forwarder does.
  std::vector<ReadingRecord> out(7);
  out[0].kind = RecordKind::kAlert;
  out[0].alert = "stale";
  j->read(0, 100, out);
  REQUIRE(out.size() == 4);
  CHECK((out[0].kind == RecordKind::kReading));
  CHECK(out[0].value == 21.5);
  CHECK((out[0].reference == TimeReference::kBroker));
  CHECK((out[1].kind == RecordKind::kAggregate));
  CHECK(*out[1].series == kTemp);
  CHECK(out[1].event_time == w.start);
  CHECK(std::isnan(out[1].value));
  CHECK((out[1].window == w));
  CHECK(std::signbit(out[1].window.last));
  CHECK((out[2].kind == RecordKind::kAlert));
  CHECK(out[2].alert == alert);
  CHECK(out[2].value == 91.25);
  CHECK(out[2].event_time == kT0 + 5);
  CHECK((out[3].kind == RecordKind::kReading));
  CHECK((out[3].reference == TimeReference::kReceive));
  CHECK(out[3].value == 22.5);

  // The outbox read sees only the alerts.
  j->append(t, 1, kT0, std::nullopt, TimeReference::kReceive);
  j->appendAlert(t, kT0 + 6, 79, R"({"state":"resolved"})");
  REQUIRE(j->commit());
  j->readAlerts(0, 100, out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].seq == 3);
  CHECK(out[1].seq == 6);
  CHECK(out[1].alert == R"({"state":"resolved"})");
  j->readAlerts(3, 1, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 6);
  j->readAlerts(6, 10, out);
  CHECK(out.empty());

  // And everything survives a reopen.
  j.reset();
  j = Journal::open(optionsFor(dir));
  j->read(1, 1, out);
  REQUIRE(out.size() == 1);
  CHECK((out[0].window == w));
}

TEST_CASE("state values persist with the next commit only") {
  TempDir dir;
  auto j = Journal::open(optionsFor(dir));
  CHECK_FALSE(j->state("windows").has_value());
  j->putState("windows", std::string("a\0b", 3));
  CHECK(*j->state("windows") == std::string("a\0b", 3));
  j.reset();  // not committed: gone
  j = Journal::open(optionsFor(dir));
  CHECK_FALSE(j->state("windows").has_value());
  j->putState("windows", "v1");
  j->putState("alerts", "[]");
  REQUIRE(j->commit());
  j->putState("windows", "v2");
  REQUIRE(j->commit());
  j.reset();
  j = Journal::open(optionsFor(dir));
  CHECK(*j->state("windows") == "v2");
  CHECK(*j->state("alerts") == "[]");
}

TEST_CASE("a version 1 journal is upgraded in place, its rows and cursors kept") {
  TempDir dir;
  fs::create_directories(dir.db().parent_path());
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
    const char* v1 = R"sql(
PRAGMA journal_mode=WAL;
CREATE TABLE r(seq INTEGER PRIMARY KEY, s INTEGER NOT NULL, t INTEGER NOT NULL, v REAL,
               d INTEGER, f INTEGER NOT NULL);
CREATE TABLE series(id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
                    tags BLOB NOT NULL);
CREATE TABLE sinks(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL, dropped INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE commits(first_seq INTEGER PRIMARY KEY, t INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(k, v) VALUES('floor', 0);
INSERT INTO series VALUES(0, 'press-7', 'pressure', x'');
INSERT INTO r VALUES(1, 0, 1000, 1.5, NULL, 1), (2, 0, 2000, 2.5, 10, 0);
INSERT INTO sinks VALUES('a', 1, 0);
PRAGMA application_id = 1196902961;
PRAGMA user_version = 1;
)sql";
    REQUIRE(sqlite3_exec(db, v1, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  auto j = Journal::open(optionsFor(dir));
  CHECK_FALSE(j->stats().moved_aside.has_value());
  CHECK(j->cursor("a") == 1);
  std::vector<ReadingRecord> out;
  j->read(0, 10, out);
  REQUIRE(out.size() == 2);
  CHECK((out[0].kind == RecordKind::kReading));
  CHECK((out[0].reference == TimeReference::kBroker));
  CHECK(*out[1].device_time == 1990);
  j->appendAlert(0, 3000, 1, "{}");
  REQUIRE(j->commit());
  j->readAlerts(0, 10, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 3);
  j.reset();
  OtherConnection other(dir.db());
  CHECK(other.queryInt("PRAGMA user_version") == 8);  // through versions 2 to 5 in one go
}

TEST_CASE("any time reference value reads back as itself, never as another kind") {
  TempDir dir;
  auto j = Journal::open(optionsFor(dir));
  const SeriesId t = j->internSeries(kTemp);
  // Values a later TimeReference (a Sparkplug or OPC UA server time) may take.
  for (int ref : {2, 3, 255}) j->append(t, ref, kT0, kT0 - 1, static_cast<TimeReference>(ref));
  REQUIRE(j->commit());
  j.reset();
  j = Journal::open(optionsFor(dir));
  std::vector<ReadingRecord> out;
  j->read(0, 10, out);
  REQUIRE(out.size() == 3);
  for (const ReadingRecord& r : out) {
    CHECK((r.kind == RecordKind::kReading));
    CHECK(static_cast<int>(r.reference) == static_cast<int>(r.value));
    CHECK(r.device_time == kT0 - 1);
  }
  j->readAlerts(0, 10, out);
  CHECK(out.empty());
}

namespace {

// Redirects file descriptor 2 (where gw::log writes) to a file until stop(), which returns
// what was written and writes it to the real stderr too, so a failing test still shows it.
class StderrCapture {
 public:
  explicit StderrCapture(fs::path file) : file_(std::move(file)) {
    const int fd = ::open(file_.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    saved_ = ::dup(STDERR_FILENO);
    const bool redirected = saved_ >= 0 && ::dup2(fd, STDERR_FILENO) >= 0;
    ::close(fd);
    REQUIRE(redirected);
  }
  ~StderrCapture() { restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  std::string stop() {
    restore();
    std::string text = fileBytes(file_);
    ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
    (void)ignored;
    return text;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }

  fs::path file_;
  int saved_ = -1;
};

void appendVarint(std::string& out, std::uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += static_cast<char>(v | 0x80);
  out += static_cast<char>(v);
}

// The journal's encoding of an aggregate's statistics (column x, the same in versions 2 and
// 3): varints stats, count, late, quantiles, then each other statistic as a little-endian
// double, in kStatOrder.
std::string windowBlob(const WindowStats& w) {
  std::string out;
  appendVarint(out, w.stats);
  appendVarint(out, w.count);
  appendVarint(out, w.late);
  appendVarint(out, static_cast<std::uint8_t>(w.quantiles));
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    const double v = w.get(st);
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 8; ++i) out += static_cast<char>(bits >> (8 * i));
  }
  return out;
}

std::string tagsBlob(const Series& s) {
  std::string out;
  for (const auto& [k, v] : s.tags) {
    appendVarint(out, k.size());
    out += k;
    appendVarint(out, v.size());
    out += v;
  }
  return out;
}

// The version 2 schema, as kSchema wrote it.
constexpr const char* kSchemaV2 = R"sql(
PRAGMA journal_mode=WAL;
BEGIN IMMEDIATE;
CREATE TABLE r(seq INTEGER PRIMARY KEY, s INTEGER NOT NULL, t INTEGER NOT NULL, v REAL,
               d INTEGER, f INTEGER NOT NULL, x BLOB);
CREATE INDEX r_alerts ON r(f) WHERE f = 3;
CREATE TABLE state(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE series(id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
                    tags BLOB NOT NULL);
CREATE TABLE sinks(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL, dropped INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE commits(first_seq INTEGER PRIMARY KEY, t INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(k, v) VALUES('floor', 0);
PRAGMA application_id = 1196902961;
PRAGMA user_version = 2;
COMMIT;
)sql";

// A statement parameter: integer, real, text, blob or NULL.
struct Null {};
struct Bytes {
  std::string b;
};
struct Param {
  enum Type { kInt, kReal, kText, kBlob, kNull } type;
  std::int64_t i = 0;
  double d = 0;
  std::string s;
  Param(std::int64_t v) : type(kInt), i(v) {}
  Param(double v) : type(kReal), d(v) {}
  Param(std::string v) : type(kText), s(std::move(v)) {}
  Param(Bytes v) : type(kBlob), s(std::move(v.b)) {}
  Param(Null) : type(kNull) {}
};

// Runs `sql` with `params` bound in order.
void execWith(sqlite3* db, const char* sql, const std::vector<Param>& params) {
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
  for (size_t i = 0; i < params.size(); ++i) {
    const int n = static_cast<int>(i + 1);
    const Param& p = params[i];
    const int size = static_cast<int>(p.s.size());
    int rc = SQLITE_OK;
    switch (p.type) {
      case Param::kInt:
        rc = sqlite3_bind_int64(s, n, p.i);
        break;
      case Param::kReal:
        rc = sqlite3_bind_double(s, n, p.d);
        break;
      case Param::kText:
        rc = sqlite3_bind_text(s, n, p.s.data(), size, SQLITE_TRANSIENT);
        break;
      case Param::kBlob:
        rc = sqlite3_bind_blob(s, n, p.s.data(), size, SQLITE_TRANSIENT);
        break;
      case Param::kNull:
        rc = sqlite3_bind_null(s, n);
        break;
    }
    REQUIRE(rc == SQLITE_OK);
  }
  const int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  REQUIRE(rc == SQLITE_DONE);
}

// Writes `rec` as a version 2 row: f is the reading's TimeReference, 2 for an aggregate, 3 for
// an alert.
void insertV2Row(sqlite3* db, const ReadingRecord& rec, SeriesId sid) {
  const auto u = [](Nanos a, Nanos b) {  // wrapping a - b, as the journal stores it
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
  };
  const Param value = std::isnan(rec.value) ? Param{Null{}} : Param{rec.value};
  std::vector<Param> p{static_cast<std::int64_t>(rec.seq), std::int64_t{sid}};
  switch (rec.kind) {
    case RecordKind::kReading:
      p.insert(p.end(), {rec.event_time, value,
                         rec.device_time ? Param{u(rec.event_time, *rec.device_time)} : Null{},
                         std::int64_t{static_cast<std::uint8_t>(rec.reference)}, Null{}});
      break;
    case RecordKind::kAggregate:
      p.insert(p.end(), {rec.window.start, Null{}, rec.window.size, std::int64_t{2},
                         Bytes{windowBlob(rec.window)}});
      break;
    case RecordKind::kAlert:
      p.insert(p.end(), {rec.event_time, value, Null{}, std::int64_t{3}, Bytes{rec.alert}});
      break;
  }
  execWith(db, "INSERT INTO r(seq, s, t, v, d, f, x) VALUES(?, ?, ?, ?, ?, ?, ?)", p);
}

void checkSameRecord(const ReadingRecord& got, const ReadingRecord& want) {
  INFO("seq " << want.seq);
  CHECK(got.seq == want.seq);
  REQUIRE(got.series != nullptr);
  CHECK(*got.series == *want.series);
  CHECK((got.kind == want.kind));
  CHECK(got.event_time == want.event_time);
  CHECK(std::isnan(got.value) == std::isnan(want.value));
  if (!std::isnan(want.value)) CHECK(got.value == want.value);
  if (want.kind == RecordKind::kReading) {
    CHECK(static_cast<int>(got.reference) == static_cast<int>(want.reference));
    CHECK(got.device_time == want.device_time);
  }
  if (want.kind == RecordKind::kAggregate) {
    CHECK((got.window == want.window));
    CHECK(std::signbit(got.window.last) == std::signbit(want.window.last));
  }
  if (want.kind == RecordKind::kAlert) CHECK(got.alert == want.alert);
}

// Everything a journal file holds, byte for byte, for comparing two states of it.
std::string dumpJournal(const fs::path& p) {
  OtherConnection db(p);
  std::string out;
  std::vector<std::string> queries = {
      "PRAGMA application_id",
      "PRAGMA user_version",
      "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name",
      "SELECT * FROM series ORDER BY id",
      "SELECT * FROM sinks ORDER BY name",
      "SELECT * FROM commits ORDER BY first_seq",
      "SELECT * FROM meta ORDER BY k",
      "SELECT * FROM state ORDER BY k"};
  {
    // The rows: table r (up to version 4) or the segments r_<n> (version 5).
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db.db,
                               "SELECT name FROM sqlite_master WHERE type = 'table' AND (name = "
                               "'r' OR name GLOB 'r_[0-9]*') ORDER BY name",
                               -1, &s, nullptr) == SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
      queries.push_back(std::string("SELECT * FROM ") +
                        reinterpret_cast<const char*>(sqlite3_column_text(s, 0)) + " ORDER BY seq");
    sqlite3_finalize(s);
  }
  for (const std::string& query : queries) {
    const char* sql = query.c_str();
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db.db, sql, -1, &s, nullptr) == SQLITE_OK);
    out += sql;
    out += '\n';
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        switch (sqlite3_column_type(s, i)) {
          case SQLITE_NULL:
            out += "NULL";
            break;
          case SQLITE_INTEGER:
            out += std::to_string(sqlite3_column_int64(s, i));
            break;
          case SQLITE_FLOAT: {
            const double v = sqlite3_column_double(s, i);
            std::uint64_t bits = 0;
            std::memcpy(&bits, &v, sizeof bits);
            out += "f" + std::to_string(bits);
            break;
          }
          default: {  // text or blob: the bytes as stored
            const auto* b = static_cast<const char*>(sqlite3_column_blob(s, i));
            out += std::to_string(sqlite3_column_type(s, i)) + ":" +
                   std::string(b ? b : "", static_cast<size_t>(sqlite3_column_bytes(s, i)));
          }
        }
        out += '|';
      }
      out += '\n';
    }
    sqlite3_finalize(s);
    REQUIRE(rc == SQLITE_DONE);
  }
  return out;
}

}  // namespace

TEST_CASE(
    "a version 2 journal with a backlog is upgraded in place: nothing re-sent, nothing lost") {
  TempDir dir;
  fs::create_directories(dir.db().parent_path());
  const Series series[] = {kTemp, kPressure};
  const gw::InternedSeries interned[] = {gw::InternedSeries(kTemp), gw::InternedSeries(kPressure)};
  constexpr Nanos kMin = std::numeric_limits<Nanos>::min();
  constexpr Nanos kCommit1 = kT0 - 3 * kMinute, kCommit2 = kT0 - kMinute;

  WindowStats w1;
  w1.size = 10 * kNanosPerSecond;
  w1.start = kT0 - kT0 % w1.size;
  w1.count = 12345;
  w1.late = 3;
  w1.quantiles = QuantileMode::kSketch;
  w1.min = -40.25;
  w1.max = 1e300;
  w1.avg = std::nextafter(21.5, 22.0);
  w1.p95 = 0.1;
  WindowStats w2;
  w2.size = 5 * kMinute;
  w2.start = kT0 - kT0 % w2.size;
  w2.count = 1;
  w2.stats = kAllStats;
  w2.quantiles = QuantileMode::kCollapsed;
  w2.min = w2.max = w2.avg = w2.p95 = w2.sum = w2.p50 = w2.p99 = w2.first = 7.5;
  w2.stddev = 0;
  w2.last = -0.0;

  // Rows 1..40 were deleted before (floor 40); 41..52 are left, of every kind.
  const auto reading = [&](std::uint64_t seq, SeriesId s, double v, Nanos t,
                           std::optional<Nanos> device, TimeReference ref) {
    ReadingRecord r;
    r.seq = seq;
    r.series = &interned[s];
    r.value = v;
    r.event_time = t;
    r.device_time = device;
    r.reference = ref;
    return std::pair{s, r};
  };
  const auto aggregate = [&](std::uint64_t seq, SeriesId s, const WindowStats& w) {
    ReadingRecord r;
    r.seq = seq;
    r.series = &interned[s];
    r.value = std::numeric_limits<double>::quiet_NaN();
    r.event_time = w.start;
    r.kind = RecordKind::kAggregate;
    r.window = w;
    return std::pair{s, r};
  };
  const auto alert = [&](std::uint64_t seq, SeriesId s, Nanos t, double v, std::string json) {
    ReadingRecord r;
    r.seq = seq;
    r.series = &interned[s];
    r.value = v;
    r.event_time = t;
    r.kind = RecordKind::kAlert;
    r.alert = std::move(json);
    return std::pair{s, r};
  };
  std::vector<std::pair<SeriesId, ReadingRecord>> rows = {
      reading(41, 0, 21.5, kT0, kT0 - 1234, TimeReference::kBroker),
      reading(42, 1, std::nan(""), kT0 + 1, std::nullopt, TimeReference::kReceive),
      aggregate(43, 0, w1),
      reading(44, 0, -3.0, kT0 + 2, std::nullopt, TimeReference::kBroker),
      alert(45, 0, kT0 + 5, 91.25, R"({"rule":"hot","state":"firing"})"),
      reading(46, 1, 1e300, kT0 + 3, kMin, TimeReference::kReceive),
      reading(47, 0, 0.0, kT0 + 4, 0, TimeReference::kBroker),  // a 1970 device clock
      aggregate(48, 1, w2),
      alert(49, 1, kT0 + 6, 79, R"({"rule":"low","state":"resolved"})"),
      reading(50, 0, 22.25, kT0 + 7, kT0 + 7 + 20 * kNanosPerMilli, TimeReference::kReceive),
      reading(51, 1, -0.5, kT0 + 8, kT0, TimeReference::kBroker),
      reading(52, 0, 23.0, kT0 + 9, std::nullopt, TimeReference::kReceive),
  };
  // Sink cursors at different places; "gone" is in the file but no longer configured.
  const std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> sinks = {
      {"a", {40, 7}}, {"b", {44, 0}}, {"c", {49, 2}}, {"d", {52, 0}}, {"gone", {45, 1}}};
  const std::string watermark("w\0\xff", 3);
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &raw) == SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
    REQUIRE(sqlite3_exec(db.get(), kSchemaV2, nullptr, nullptr, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK);
    for (SeriesId id : {0u, 1u})
      execWith(
          db.get(), "INSERT INTO series(id, device, metric, tags) VALUES(?, ?, ?, ?)",
          {std::int64_t{id}, series[id].device, series[id].metric, Bytes{tagsBlob(series[id])}});
    for (const auto& [sid, rec] : rows) insertV2Row(db.get(), rec, sid);
    execWith(db.get(), "UPDATE meta SET v = 40 WHERE k = 'floor'", {});
    execWith(db.get(), "INSERT INTO commits(first_seq, t) VALUES(41, ?), (47, ?)",
             {kCommit1, kCommit2});
    for (const auto& [name, cd] : sinks)
      execWith(db.get(), "INSERT INTO sinks(name, cursor, dropped) VALUES(?, ?, ?)",
               {name, static_cast<std::int64_t>(cd.first), static_cast<std::int64_t>(cd.second)});
    execWith(db.get(), "INSERT INTO state(k, v) VALUES('windows', ?), ('alerts', ?)",
             {Bytes{watermark}, Bytes{"[]"}});
    REQUIRE(sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  }
  const std::vector<std::string> configured = {"a", "b", "c", "d"};
  FakeClock clock;  // kT0: the commits after the upgrade get a marker of their own

  StderrCapture capture(dir.path / "stderr");
  auto j = Journal::open(optionsFor(dir, configured, &clock));
  const std::string log = capture.stop();
  CHECK(log.find("<5>journal " + dir.db().string() +
                 ": schema upgraded in place from version 2 to 8 (4 rows rewritten)") !=
        std::string::npos);
  CHECK(log.find("<3>") == std::string::npos);  // no error

  // Nothing lost.
  const JournalStats s = j->stats();
  CHECK_FALSE(s.moved_aside.has_value());
  CHECK(s.last_seq == 52);
  CHECK(s.rows == 12);
  CHECK(j->lastSeq() == 52);
  CHECK(*j->state("windows") == watermark);
  CHECK(*j->state("alerts") == "[]");
  CHECK(j->internSeries(kTemp) == 0);
  CHECK(j->internSeries(kPressure) == 1);
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("PRAGMA user_version") == 8);
    // Table r became the first segment, r_0.
    CHECK(other.queryInt("SELECT count(*) FROM sqlite_master WHERE name = 'r'") == 0);
    CHECK(other.queryInt("SELECT count(*) FROM r_0") == 12);
    // The layout documented in journal.cpp: k 1 aggregate, 2 alert; c 0 outside readings.
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 0") == 8);
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 1 AND seq IN (43, 48)") == 2);
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 2 AND seq IN (45, 49)") == 2);
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k <> 0 AND c <> 0") == 0);
    CHECK(other.queryInt("SELECT v FROM meta WHERE k = 'floor'") == 40);
    CHECK(other.queryInt("SELECT cursor FROM sinks WHERE name = 'gone'") == 45);
    CHECK(other.queryInt("SELECT count(*) FROM pragma_index_list('r_0')") == 1);  // alerts only
    // The outbox read still uses the partial index, now on the kind column.
    sqlite3_stmt* plan = nullptr;
    REQUIRE(sqlite3_prepare_v2(other.db,
                               "EXPLAIN QUERY PLAN SELECT seq, s, t, v, d, c, x, k FROM r_0 WHERE "
                               "k = 2 AND seq > ? ORDER BY seq LIMIT ?",
                               -1, &plan, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(plan) == SQLITE_ROW);
    const std::string detail = reinterpret_cast<const char*>(sqlite3_column_text(plan, 3));
    sqlite3_finalize(plan);
    CHECK(detail.find("USING INDEX r_0_alerts") != std::string::npos);
  }

  // Nothing re-sent: every cursor, dropped count and commit time as it was, and each sink
  // reads exactly its unsent rows, as they were written.
  const auto checkSinks = [&](Journal& jr) {
    const std::uint64_t last = rows.back().second.seq;
    const JournalStats st = jr.stats();
    CHECK(st.sinks.size() == configured.size());
    for (const std::string& name : configured) {
      INFO("sink " << name);
      const auto [cursor, dropped] = sinks.at(name);
      CHECK(jr.cursor(name) == cursor);
      const SinkBacklog& b = st.sinks.at(name);
      CHECK(b.cursor == cursor);
      CHECK(b.dropped == dropped);
      CHECK(b.backlog == last - cursor);
      if (cursor < last) {
        CHECK(b.oldest_unsent == (cursor + 1 < 47 ? kCommit1 : cursor + 1 < 53 ? kCommit2 : kT0));
      } else {
        CHECK_FALSE(b.oldest_unsent.has_value());
      }
      std::vector<ReadingRecord> out;
      jr.read(cursor, 1000, out);
      std::vector<const ReadingRecord*> want;
      for (const auto& [sid, rec] : rows)
        if (rec.seq > cursor) want.push_back(&rec);
      REQUIRE(out.size() == want.size());
      for (size_t i = 0; i < out.size(); ++i) checkSameRecord(out[i], *want[i]);
      // Page by page, as a forwarder reads.
      for (std::uint64_t after = cursor; after < last; ++after) {
        jr.read(after, 1, out);
        REQUIRE(out.size() == 1);
        CHECK(out[0].seq == after + 1);
      }
    }
    std::vector<const ReadingRecord*> alerts;
    for (const auto& [sid, rec] : rows)
      if (rec.kind == RecordKind::kAlert) alerts.push_back(&rec);
    std::vector<ReadingRecord> out;
    jr.readAlerts(0, 100, out);
    REQUIRE(out.size() == alerts.size());
    for (size_t i = 0; i < out.size(); ++i) checkSameRecord(out[i], *alerts[i]);
    for (size_t i = 0; i < alerts.size(); ++i) {
      jr.readAlerts(alerts[i]->seq, 1, out);
      if (i + 1 < alerts.size()) {
        REQUIRE(out.size() == 1);
        CHECK(out[0].seq == alerts[i + 1]->seq);
      } else {
        CHECK(out.empty());
      }
    }
  };
  checkSinks(*j);

  // New records continue the seq; a reference value beyond today's enum reads back as itself.
  WindowStats w3 = w1;
  w3.start += w3.size;
  CHECK(j->append(1, 5.5, kT0 + 10, kT0 + 9, TimeReference::kBroker) == 53);
  CHECK(j->appendAggregate(0, w3) == 54);
  CHECK(j->appendAlert(0, kT0 + 11, 95, R"({"state":"firing"})") == 55);
  CHECK(j->append(0, 6.5, kT0 + 12, std::nullopt, static_cast<TimeReference>(2)) == 56);
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == 56);
  rows.push_back(reading(53, 1, 5.5, kT0 + 10, kT0 + 9, TimeReference::kBroker));
  rows.push_back(aggregate(54, 0, w3));
  rows.push_back(alert(55, 0, kT0 + 11, 95, R"({"state":"firing"})"));
  rows.push_back(reading(56, 0, 6.5, kT0 + 12, std::nullopt, static_cast<TimeReference>(2)));
  checkSinks(*j);

  // A second open changes nothing and logs no upgrade.
  j.reset();
  const std::string before = dumpJournal(dir.db());
  StderrCapture again(dir.path / "stderr2");
  j = Journal::open(optionsFor(dir, configured, &clock));
  const std::string log2 = again.stop();
  CHECK(log2.find("upgraded") == std::string::npos);
  j.reset();
  CHECK(dumpJournal(dir.db()) == before);
  j = Journal::open(optionsFor(dir, configured, &clock));
  CHECK(j->lastSeq() == 56);
  checkSinks(*j);
  std::vector<ReadingRecord> out;
  j->read(0, 100, out);
  REQUIRE(out.size() == rows.size());
  for (size_t i = 0; i < rows.size(); ++i) checkSameRecord(out[i], rows[i].second);
}

TEST_CASE("an upgrade that fails half-way leaves the version 2 file as it was") {
  TempDir dir;
  fs::create_directories(dir.db().parent_path());
  {
    OtherConnection db(dir.db());
    REQUIRE(db.exec(kSchemaV2) == SQLITE_OK);
    // A column k already there makes the step fail after it has renamed f.
    REQUIRE(db.exec("ALTER TABLE r ADD COLUMN k INTEGER;"
                    "INSERT INTO series VALUES(0, 'press-7', 'pressure', x'');"
                    "INSERT INTO r(seq, s, t, v, d, f, x) VALUES(1, 0, 1000, 1.5, NULL, 1, NULL),"
                    "  (3, 0, 2000, 2.5, NULL, 3, '{}');"
                    "INSERT INTO sinks VALUES('a', 1, 0);") == SQLITE_OK);
    execWith(db.db, "INSERT INTO r(seq, s, t, v, d, f, x) VALUES(2, 0, 1000, NULL, 10, 2, ?)",
             {Bytes{windowBlob(WindowStats{})}});
  }
  const std::string before = dumpJournal(dir.db());
  SUBCASE("an error in a step") {
    CHECK_THROWS_WITH_AS(Journal::open(optionsFor(dir)),
                         doctest::Contains("upgrading the schema from version 2 to 8: duplicate "
                                           "column name: k"),
                         JournalError);
    CHECK(dumpJournal(dir.db()) == before);
  }
  SUBCASE("another process holds the write lock") {
    {
      OtherConnection db(dir.db());
      REQUIRE(db.exec("ALTER TABLE r DROP COLUMN k") == SQLITE_OK);  // a sound version 2 file
      const std::string sound = dumpJournal(dir.db());
      REQUIRE(db.exec("BEGIN IMMEDIATE") == SQLITE_OK);
      CHECK_THROWS_AS(Journal::open(optionsFor(dir)), JournalError);
      REQUIRE(db.exec("ROLLBACK") == SQLITE_OK);
      CHECK(dumpJournal(dir.db()) == sound);
    }
    auto j = Journal::open(optionsFor(dir));
    CHECK_FALSE(j->stats().moved_aside.has_value());
    CHECK(j->cursor("a") == 1);
    std::vector<ReadingRecord> out;
    j->read(0, 10, out);
    REQUIRE(out.size() == 3);
    CHECK((out[0].reference == TimeReference::kBroker));
    CHECK((out[1].kind == RecordKind::kAggregate));
    CHECK((out[2].kind == RecordKind::kAlert));
  }
}

TEST_CASE("a journal pulled away under the running journal is written back, nothing lost") {
  TempDir dir;
  const fs::path db = dir.db();
  const auto wal = fs::path(db) += "-wal";
  const auto shm = fs::path(db) += "-shm";
  auto j = Journal::open(optionsFor(dir, {"a"}));
  const SeriesId id = j->internSeries(kTemp);
  addRows(*j, id, 500);
  CHECK(j->checkFile());  // in place: nothing to do
  CHECK(j->stats().restores == 0);
  REQUIRE(fs::exists(wal));

  std::string kept;
  SUBCASE("deleted, with its -wal and -shm") {
    for (const auto& p : {db, wal, shm}) fs::remove(p);
  }
  SUBCASE("only the -wal deleted") { fs::remove(wal); }
  SUBCASE("moved to another name") {
    fs::rename(db, fs::path(db) += ".old");
    fs::rename(wal, fs::path(db) += ".old-wal");
  }
  SUBCASE("replaced by another file, which is kept") {
    fs::remove(db);
    kept = "someone else's file";
    std::ofstream(db, std::ios::binary) << kept;
  }
  SUBCASE("the whole state folder deleted") { fs::remove_all(db.parent_path()); }

  // Commits go on into the open (pulled-away) files until the check: they must survive too.
  addRows(*j, id, 300);
  CHECK(j->checkFile());
  CHECK(j->stats().restores == 1);
  CHECK(j->checkFile());  // and now it is in place
  CHECK(j->stats().restores == 1);
  addRows(*j, id, 200);  // and after
  j->setCursor("a", 100);
  REQUIRE(j->commit());
  CHECK(j->lastSeq() == 1000);
  if (!kept.empty()) {
    std::vector<fs::path> replaced;
    for (const auto& e : fs::directory_iterator(db.parent_path()))
      if (e.path().filename().string().rfind("journal.db.replaced-", 0) == 0)
        replaced.push_back(e.path());
    REQUIRE(replaced.size() == 1);
    CHECK(fileBytes(replaced[0]) == kept);
  }
  j.reset();

  // What a restart finds: every row, the cursor, no leftover temporary file.
  CHECK_FALSE(fs::exists(fs::path(db) += ".restoring"));
  auto again = Journal::open(optionsFor(dir, {"a"}));
  CHECK_FALSE(again->stats().moved_aside.has_value());
  CHECK(again->lastSeq() == 1000);
  CHECK(again->cursor("a") == 100);
  const auto all = seqs(*again);
  REQUIRE(all.size() == 1000);
  CHECK(all.front() == 1);
  CHECK(all.back() == 1000);
  std::vector<ReadingRecord> out;
  again->read(0, 1, out);
  REQUIRE(out.size() == 1);
  CHECK(*out[0].series == kTemp);
}

TEST_CASE("a deleted journal loses its rows when nothing checks (what checkFile prevents)") {
  // What the check prevents, shown directly: after the delete a new journal starts empty.
  TempDir dir;
  const fs::path db = dir.db();
  {
    auto j = Journal::open(optionsFor(dir, {"a"}));
    addRows(*j, j->internSeries(kTemp), 100);
    for (const char* s : {"", "-wal", "-shm"}) fs::remove(fs::path(db) += s);
    addRows(*j, 0, 100);  // "succeeds" into deleted files
  }
  auto again = Journal::open(optionsFor(dir, {"a"}));
  CHECK(again->lastSeq() == 0);
}

TEST_CASE("a journal of a newer schema is refused and left exactly as it is") {
  TempDir dir;
  const fs::path db = dir.db();
  const auto wal = fs::path(db) += "-wal";
  {
    auto j = Journal::open(optionsFor(dir));
    addRows(*j, j->internSeries(kTemp), 300);
  }
  {
    // The newer version's last words are still in its -wal (not checkpointed).
    OtherConnection newer(db);
    REQUIRE(sqlite3_db_config(newer.db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr) == SQLITE_OK);
    REQUIRE(newer.exec("PRAGMA user_version = 9; CREATE TABLE r2(x); INSERT INTO r2 VALUES(1);") ==
            SQLITE_OK);
  }
  REQUIRE(fs::exists(wal));
  const std::string db_before = fileBytes(db), wal_before = fileBytes(wal);

  std::string message;
  try {
    Journal::open(optionsFor(dir));
    FAIL("a newer journal was opened");
  } catch (const JournalNewerError& e) {
    message = e.what();
  }
  CHECK(message.find("schema version is 9") != std::string::npos);
  CHECK(message.find("reads versions 1 to 8") != std::string::npos);
  CHECK(message.find(db.string()) != std::string::npos);
  CHECK(fileBytes(db) == db_before);
  CHECK(fileBytes(wal) == wal_before);
  for (const auto& e : fs::directory_iterator(db.parent_path()))
    CHECK(e.path().filename().string().find("corrupt") == std::string::npos);
  OtherConnection check(db);
  CHECK(check.queryInt("PRAGMA user_version") == 9);
  CHECK(check.queryInt("SELECT count(*) FROM r_0") == 300);
}

TEST_CASE("a checkpointed newer journal is refused from its header: no -wal or -shm appears") {
  TempDir dir;
  const fs::path db = dir.db();
  {
    auto j = Journal::open(optionsFor(dir));
    addRows(*j, j->internSeries(kTemp), 10);
  }
  {
    OtherConnection newer(db);
    REQUIRE(newer.exec("PRAGMA user_version = 10") == SQLITE_OK);
  }  // checkpointed and its -wal removed on close
  REQUIRE_FALSE(fs::exists(fs::path(db) += "-wal"));
  const std::string before = fileBytes(db);
  CHECK_THROWS_WITH_AS(
      Journal::open(optionsFor(dir)),
      doctest::Contains("its schema version is 10, this gatewayd reads versions 1 to 8"),
      JournalNewerError);
  CHECK(fileBytes(db) == before);
  CHECK_FALSE(fs::exists(fs::path(db) += "-wal"));
  CHECK_FALSE(fs::exists(fs::path(db) += "-shm"));
}

namespace {

// Every reading of addRows(): value i + 0.25 at kT0 + i ms, device time 20 ms before.
void checkSalvagedReadings(Journal& j, size_t originals, size_t expect_at_least) {
  std::vector<ReadingRecord> out;
  j.read(0, 1000000, out);
  size_t readings = 0;
  for (const auto& r : out) {
    if (r.kind != RecordKind::kReading) continue;
    ++readings;
    const auto i = static_cast<size_t>((r.event_time - kT0) / kNanosPerMilli);
    REQUIRE(i < originals);
    CHECK(r.value == static_cast<double>(i) + 0.25);
    REQUIRE(r.device_time.has_value());
    CHECK(*r.device_time == r.event_time - 20 * kNanosPerMilli);
    CHECK(static_cast<int>(r.reference) == static_cast<int>(TimeReference::kReceive));
    CHECK(*r.series == kTemp);
  }
  CHECK(readings >= expect_at_least);
  CHECK(readings <= originals);
}

}  // namespace

TEST_CASE("salvage: the readable rows of a journal with overwritten pages, page 1 among them") {
  // Page 1 holds the page size: without it salvage finds it from the pages (2 KiB for new
  // journals, 4 KiB for journals created before).
  size_t page_size = 0;
  SUBCASE("2 KiB pages") { page_size = 2048; }
  SUBCASE("4 KiB pages") { page_size = 4096; }
  CAPTURE(page_size);
  TempDir dir, live;
  const fs::path db = dir.db();
  {
    JournalOptions o = optionsFor(dir);
    o.new_page_size = static_cast<int>(page_size);
    auto j = Journal::open(o);
    const SeriesId id = j->internSeries(kTemp);
    addRows(*j, id, 6000);
    WindowStats w;
    w.start = kT0;
    w.size = 10 * kNanosPerSecond;
    w.count = 3;
    w.min = 1;
    w.max = 3;
    w.avg = 2;
    w.p95 = 3;
    j->appendAggregate(id, w);
    j->appendAlert(id, kT0, 99.5, R"({"rule":"hot"})");
    REQUIRE(j->commit());
  }
  const auto size = fs::file_size(db);
  const size_t pages = size / page_size;
  REQUIRE(pages > 20);
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    std::string garbage(page_size, '\0');
    for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 131) % 251);
    for (size_t page : {size_t{1}, pages / 3, pages / 3 + 1, pages * 2 / 3}) {
      f.seekp(static_cast<std::streamoff>((page - 1) * page_size));
      f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    }
  }
  auto j = Journal::open(optionsFor(live, {"kafka"}));
  const SalvageReport r = salvageInto(db, *j);
  const std::string summary = std::to_string(r.readings) + " of 6000 readings salvaged, " +
                              std::to_string(r.missing()) + " seqs missing, " +
                              std::to_string(r.bad_pages) + " bad pages";
  MESSAGE(summary);
  CHECK(r.no_series == 0);
  CHECK(r.undecodable == 0);
  CHECK(r.missing() > 0);                   // three pages of rows are gone …
  CHECK(r.readings + r.missing() == 6000);  // … and nothing else
  CHECK(r.records == r.readings + 2);
  CHECK(r.last_seq == 6002);
  checkSalvagedReadings(*j, 6000, 6000 - 3 * 200);
  std::vector<ReadingRecord> alerts;
  j->readAlerts(0, 10, alerts);
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].alert == R"({"rule":"hot"})");
  CHECK(alerts[0].value == 99.5);
  CHECK(j->cursor("kafka") == 0);  // the sink forwards them all
}

TEST_CASE("salvage leaves out deleted rows whose bytes are still in free pages (below the floor)") {
  TempDir dir, live;
  {
    JournalOptions o = optionsFor(dir, {"a"});
    o.segment_rows = 1000;
    auto j = Journal::open(o);
    addRows(*j, j->internSeries(kTemp), 6000);
    j->setCursor("a", 4000);
    REQUIRE(j->commit());
    CHECK(j->enforceRetention(kT0) == 4000);
    CHECK(j->stats().rows == 2000);
  }
  // secure_delete is off: the 4000 deleted rows' pages went to the free list as they were.
  auto j = Journal::open(optionsFor(live, {"kafka"}));
  const SalvageReport r = salvageInto(dir.db(), *j);
  CHECK(r.floor == 4000);
  CHECK(r.below_floor > 1000);  // they are there, and left out
  CHECK(r.readings == 2000);
  CHECK(r.first_seq == 4001);
  CHECK(r.last_seq == 6000);
  CHECK(r.missing() == 0);
  std::vector<ReadingRecord> out;
  j->read(0, 10000, out);
  REQUIRE(out.size() == 2000);
  CHECK(out.front().value == 4000.25);  // the reading of seq 4001, the first one kept
}

TEST_CASE("retention while readings arrive: confirmed segments go with the next group commit") {
  TempDir dir;
  JournalOptions o = optionsFor(dir, {"a"});
  o.segment_rows = 1000;
  auto j = Journal::open(o);
  const SeriesId id = j->internSeries(kTemp);
  addRows(*j, id, 3000);  // segments 1..1000, 1001..2000, 2001..3000
  j->setCursor("a", 2500);
  REQUIRE(j->commit());
  const std::uint64_t commits = j->stats().commits;
  j->append(id, 1, kT0, std::nullopt, TimeReference::kReceive);  // a commit is coming
  CHECK(j->enforceRetention(kT0, 1000) == 0);  // left to it: no transaction of its own
  CHECK(j->stats().rows == 3000);
  REQUIRE(j->commit());  // deletes the two whole confirmed segments with the reading
  CHECK(j->stats().rows == 1001);
  CHECK(seqs(*j).front() == 2001);
  CHECK(j->stats().commits == commits + 1);
  {
    OtherConnection other(dir.db());  // committed
    CHECK(other.queryInt("SELECT count(*) FROM r_0") + other.queryInt("SELECT count(*) FROM r_1") ==
          0);
    CHECK(other.queryInt("SELECT v FROM meta WHERE k = 'floor'") == 2000);
  }
  j->append(id, 2, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());  // 2001..3000 are not all confirmed: kept
  CHECK(j->stats().rows == 1002);
  // Idle (nothing pending): retention deletes at once.
  j->setCursor("a", 3002);
  REQUIRE(j->commit());
  CHECK(j->enforceRetention(kT0) == 1002);
  CHECK(j->stats().rows == 0);
}

TEST_CASE("the WAL is checkpointed on the checkpointer's thread once it holds 1,000 frames") {
  TempDir dir;
  JournalOptions o = optionsFor(dir, {"a"});
  const auto page = static_cast<std::uintmax_t>(o.new_page_size);
  o.wal_checkpoint_bytes = 1000 * (page + 24);  // the default is 64 MiB (journal_io_test.cpp)
  auto j = Journal::open(o);
  const SeriesId id = j->internSeries(kTemp);
  const auto db_size = fs::file_size(dir.db());
  addRows(*j, id, 40000, 100);  // 400 commits of a few pages each: over 1,000 frames
  // The commit that crossed 1,000 frames only asked; the pages reach the file from the other
  // thread (the event loop would checkpoint itself only at 2,000 frames).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fs::file_size(dir.db()) < db_size + 100 * page &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(fs::file_size(dir.db()) >= db_size + 100 * page);
  CHECK(seqs(*j).size() == j->stats().rows);
}

TEST_CASE("a new journal has new_page_size pages; an existing one keeps its own") {
  // The page size in the file header: bytes 16-17, big-endian (issue 16: 2 KiB for new files).
  const auto pageSizeOf = [](const fs::path& db) {
    const std::string h = fileBytes(db);
    REQUIRE(h.size() >= 100);
    return (static_cast<unsigned char>(h[16]) << 8) | static_cast<unsigned char>(h[17]);
  };
  TempDir fresh, old;
  {
    auto j = Journal::open(optionsFor(fresh));
    addRows(*j, j->internSeries(kTemp), 10);
  }
  CHECK(JournalOptions{}.new_page_size == 2048);
  CHECK(pageSizeOf(fresh.db()) == 2048);
  {
    JournalOptions o = optionsFor(old);
    o.new_page_size = 4096;  // a journal created before 2 KiB pages
    auto j = Journal::open(o);
    addRows(*j, j->internSeries(kTemp), 10);
  }
  {
    auto j = Journal::open(optionsFor(old));  // reopened with the default
    addRows(*j, j->internSeries(kTemp), 10);
    CHECK(j->stats().rows == 20);
  }
  CHECK(pageSizeOf(old.db()) == 4096);
}

TEST_CASE("salvage reads the -wal's committed pages over the file's") {
  TempDir dir, copy, live;
  auto j = Journal::open(optionsFor(dir));
  addRows(*j, j->internSeries(kTemp), 2500, 100);  // part checkpointed, part in the -wal only
  fs::create_directories(copy.db().parent_path());
  for (const char* s : {"", "-wal"})
    fs::copy_file(fs::path(dir.db()) += s, fs::path(copy.db()) += s);  // as a crash leaves them
  REQUIRE(fs::file_size(fs::path(copy.db()) += "-wal") > 0);
  auto into = Journal::open(optionsFor(live));
  const SalvageReport r = salvageInto(copy.db(), *into);
  CHECK(r.readings == 2500);
  CHECK(r.missing() == 0);
  checkSalvagedReadings(*into, 2500, 2500);
}

TEST_CASE(
    "buffer.min_free: below it the oldest rows are dropped and counted, so the file need not "
    "grow") {
  TempDir dir;
  FakeClock clock;  // the retention passes a second apart: each asks the filesystem
  std::uint64_t free_bytes = 1ull << 30;
  const std::uint64_t total = 4ull << 30;
  JournalOptions o = optionsFor(dir, {"a", "b"}, &clock);
  o.max_size_bytes = 0;
  o.min_free_bytes = 256ull << 20;
  o.min_free_percent = 5;  // 5% of 4 GiB is 204.8 MiB: the smaller one counts
  o.disk_space = [&](std::uint64_t& f, std::uint64_t& t) {
    f = free_bytes;
    t = total;
    return true;
  };
  auto j = Journal::open(o);
  addRows(*j, j->internSeries(kTemp), 200000, 5000);
  j->setCursor("a", 150000);  // b has sent nothing
  REQUIRE(j->commit());

  // Above the threshold: only what both sinks confirmed could go (nothing: b is at 0).
  free_bytes = 205ull << 20;
  clock.now += kNanosPerSecond;
  CHECK(j->enforceRetention(kT0) == 0);
  CHECK(j->stats().rows == 200000);

  // Below: the oldest rows go until the file has room (a tenth of it, at least 2 MiB).
  free_bytes = 200ull << 20;
  clock.now += kNanosPerSecond;
  const std::uint64_t removed = j->enforceRetention(kT0);
  CHECK(removed > 0);
  const auto file = fs::file_size(dir.db());  // checkpointed by enforceRetention
  const JournalStats s = j->stats();
  CHECK(s.rows == 200000 - removed);
  CHECK(s.used_bytes + file / 10 <= file);    // room for the next commits
  CHECK(s.sinks.at("b").dropped == removed);  // b never had them
  CHECK(s.sinks.at("a").dropped == (removed > 150000 ? removed - 150000 : 0));  // a had most
  CHECK(seqs(*j, 0, 1).front() == removed + 1);                                 // the oldest went

  // The freed pages take the next commits: the file does not grow.
  addRows(*j, 0, 20000, 5000);
  CHECK(j->enforceRetention(kT0) >= 0);
  CHECK(fs::file_size(dir.db()) == file);

  // Off: nothing is dropped for free space.
  j.reset();
  o.min_free_bytes = 0;
  o.min_free_percent = 0;
  auto off = Journal::open(o);
  const auto rows = off->stats().rows;
  CHECK(off->enforceRetention(kT0) == 0);
  CHECK(off->stats().rows == rows);
}

TEST_CASE("buffer.min_free is kept at every commit, not only by the retention pass") {
  // At tens of thousands of readings a second the file can outgrow a small headroom within the
  // retention pass's second, and a full disk then stops the checkpoint that would give room.
  TempDir dir;
  FakeClock clock;
  std::uint64_t free_bytes = 1ull << 30;
  JournalOptions o = optionsFor(dir, {"a"}, &clock);
  o.max_size_bytes = 0;
  o.min_free_bytes = 64ull << 20;
  o.disk_space = [&](std::uint64_t& f, std::uint64_t& t) {
    f = free_bytes;
    t = 4ull << 30;
    return true;
  };
  auto j = Journal::open(o);
  addRows(*j, j->internSeries(kTemp), 50000, 5000);
  REQUIRE(j->commit());
  JournalStats s = j->stats();
  CHECK(s.rows == 50000);
  CHECK_FALSE(s.low_disk);
  CHECK(s.min_free == (64ull << 20));
  CHECK(s.disk_free == (1ull << 30));

  // Below (another process filled the disk): the next commit a second later drops the oldest
  // first (sooner only when this journal's own writes could have used up the headroom).
  free_bytes = 10ull << 20;
  clock.now += kNanosPerSecond;
  j->append(0, 1.0, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  s = j->stats();
  CHECK(s.low_disk);
  CHECK(s.disk_free == (10ull << 20));
  CHECK(s.rows < 50001);
  CHECK(s.sinks.at("a").dropped == 50001 - s.rows);

  free_bytes = 1ull << 30;  // back above
  j->append(0, 2.0, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  CHECK_FALSE(j->stats().low_disk);
}

TEST_CASE(
    "buffer.min_free: the filesystem is asked once a second, or when the writes could "
    "have used up the headroom") {
  // Issue 16: a statvfs() before every commit was ~20 system calls a second on the event loop.
  TempDir dir;
  FakeClock clock;
  std::uint64_t free_bytes = 1ull << 30;
  int asked = 0;
  JournalOptions o = optionsFor(dir, {"a"}, &clock);
  o.max_size_bytes = 0;
  o.min_free_bytes = 64ull << 20;
  o.disk_space = [&](std::uint64_t& f, std::uint64_t& t) {
    ++asked;
    f = free_bytes;
    t = 4ull << 30;
    return true;
  };
  auto j = Journal::open(o);
  const SeriesId id = j->internSeries(kTemp);
  REQUIRE(j->commit());
  // `times` commits of `rows` rows, 50 ms apart.
  const auto commitsEvery50ms = [&](int times, size_t rows) {
    for (int i = 0; i < times; ++i) {
      clock.now += 50 * kNanosPerMilli;
      addRows(*j, id, rows, 5000);
      REQUIRE(j->commit());
    }
  };
  asked = 0;
  // 20 small commits within a second, far above min_free: asked at most once.
  commitsEvery50ms(20, 100);
  CHECK(asked <= 1);
  const int in_first_second = asked;
  clock.now += kNanosPerSecond;  // a second later: asked again
  addRows(*j, id, 100, 5000);
  REQUIRE(j->commit());
  CHECK(asked == in_first_second + 1);

  // Just above min_free: commits that write more than the headroom are checked each time.
  free_bytes = (64ull << 20) + (64ull << 10);
  clock.now += kNanosPerSecond;
  addRows(*j, id, 100, 5000);
  REQUIRE(j->commit());
  asked = 0;
  commitsEvery50ms(5, 5000);
  CHECK(asked >= 4);

  // Below it: every commit checks (the guard drops rows until the disk is back above).
  free_bytes = 10ull << 20;
  clock.now += kNanosPerSecond;
  addRows(*j, id, 100, 5000);
  REQUIRE(j->commit());
  CHECK(j->stats().low_disk);
  asked = 0;
  for (int i = 0; i < 3; ++i) {
    addRows(*j, id, 10, 5000);
    REQUIRE(j->commit());
  }
  CHECK(asked == 3);
}

TEST_CASE("salvage of garbage finds nothing and does not crash") {
  TempDir dir, live;
  fs::create_directories(dir.db().parent_path());
  std::string bytes = "SQLite format 3";
  bytes.push_back('\0');
  std::uint32_t x = 12345;
  while (bytes.size() < 64 * 4096) {
    x = x * 1103515245 + 12345;
    // Now and then a byte that looks like a table leaf page type.
    bytes.push_back(bytes.size() % 4096 == 0 ? '\x0d' : static_cast<char>(x >> 16));
  }
  bytes[16] = 0x10;  // page size 4096
  bytes[17] = 0x00;
  std::ofstream(dir.db(), std::ios::binary) << bytes;
  std::ofstream(fs::path(dir.db()) += "-wal", std::ios::binary) << bytes.substr(0, 10000);
  auto j = Journal::open(optionsFor(live));
  const SalvageReport r = salvageInto(dir.db(), *j);
  CHECK(r.pages == 64);
  CHECK(r.appended == 0);
  CHECK(j->lastSeq() == 0);
  CHECK_THROWS_AS(salvageInto(dir.path / "nothing-here", *j), JournalError);
}

// Schema version 4 exactly as gatewayd 5a7c2d0 created it: every row in one table r.
constexpr const char* kSchemaV4 = R"sql(
BEGIN IMMEDIATE;
CREATE TABLE r(seq INTEGER PRIMARY KEY, s INTEGER NOT NULL, t INTEGER NOT NULL, v REAL,
               d INTEGER, c INTEGER NOT NULL, x BLOB, k INTEGER NOT NULL DEFAULT 0);
CREATE INDEX r_alerts ON r(k) WHERE k = 2;
CREATE TABLE state(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE series(id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL,
                    tags BLOB NOT NULL);
CREATE TABLE sinks(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL, dropped INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE commits(first_seq INTEGER PRIMARY KEY, t INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(k, v) VALUES('floor', 0);
CREATE TABLE dead(id INTEGER PRIMARY KEY, t INTEGER NOT NULL, source TEXT NOT NULL,
                  w TEXT NOT NULL, reason TEXT NOT NULL, device TEXT NOT NULL,
                  size INTEGER NOT NULL, x TEXT NOT NULL);
PRAGMA application_id = 1196902961;
PRAGMA user_version = 4;
COMMIT;
)sql";

TEST_CASE("a version 4 journal becomes segment r_0 in place; new rows go to new segments") {
  TempDir dir, live;
  fs::create_directories(dir.db().parent_path());
  {
    // 3000 rows 101..3100 (1..100 deleted before: floor 100), an alert every 500th, left in
    // the -wal as a running gatewayd would.
    OtherConnection db(dir.db());
    REQUIRE(db.exec("PRAGMA journal_mode=WAL") == SQLITE_OK);
    REQUIRE(db.exec(kSchemaV4) == SQLITE_OK);
    REQUIRE(sqlite3_db_config(db.db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr) == SQLITE_OK);
    REQUIRE(db.exec("BEGIN;"
                    "INSERT INTO series VALUES(0, 'press-7', 'temperature', x'');"
                    "WITH RECURSIVE n(i) AS (SELECT 101 UNION ALL SELECT i + 1 FROM n "
                    "WHERE i < 3100) INSERT INTO r(seq, s, t, v, d, c, x, k) "
                    "SELECT i, 0, i * 1000, i + 0.5, NULL, 1, "
                    "CASE WHEN i % 500 = 0 THEN '{\"rule\":\"hot\"}' END, "
                    "CASE WHEN i % 500 = 0 THEN 2 ELSE 0 END FROM n;"
                    "UPDATE meta SET v = 100 WHERE k = 'floor';"
                    "INSERT INTO commits VALUES(101, 1000);"
                    "INSERT INTO sinks VALUES('a', 600, 0), ('b', 100, 3);"
                    "COMMIT;") == SQLITE_OK);
  }
  JournalOptions o = withSegments(optionsFor(dir), 1000);
  StderrCapture capture(dir.path / "stderr");
  auto j = Journal::open(o);
  const std::string log = capture.stop();
  CHECK(log.find("schema upgraded in place from version 4 to 8") != std::string::npos);
  CHECK_FALSE(j->stats().moved_aside.has_value());
  CHECK(j->stats().rows == 3000);
  CHECK(j->lastSeq() == 3100);
  CHECK(j->cursor("a") == 600);
  CHECK(j->stats().sinks.at("b").dropped == 3);
  std::vector<ReadingRecord> out;
  j->readAlerts(500, 10, out);  // through the partial index of r_0
  REQUIRE(out.size() == 5);
  CHECK(out[0].seq == 1000);
  CHECK(out[0].alert == R"({"rule":"hot"})");
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("PRAGMA user_version") == 8);
    CHECK(other.queryInt("SELECT count(*) FROM sqlite_master WHERE name IN ('r', 'r_alerts')") ==
          0);
    CHECK(other.queryInt("SELECT count(*) FROM r_0") == 3000);
    CHECK(other.queryInt("SELECT count(*) FROM pragma_index_list('r_0')") == 1);
  }

  // r_0 is over 1000 rows: the next rows open segment r_1, then r_2.
  addRows(*j, 0, 1500);
  CHECK(j->lastSeq() == 4600);
  {
    OtherConnection other(dir.db());
    CHECK(other.queryInt("SELECT min(seq) FROM r_1") == 3101);
    CHECK(other.queryInt("SELECT max(seq) FROM r_1") == 4100);
    CHECK(other.queryInt("SELECT min(seq) FROM r_2") == 4101);
  }
  j->read(3095, 10, out);  // across r_0 and r_1
  REQUIRE(out.size() == 10);
  for (size_t i = 0; i < out.size(); ++i) CHECK(out[i].seq == 3096 + i);
  std::vector<ReadingRecord> tail;
  j->readDevice("press-7", 0, 3, 1000000, tail);  // the newest readings, from the newest segment
  REQUIRE(tail.size() == 3);
  CHECK(tail.back().seq == 4600);

  // Salvage finds the rows of every segment and leaves out those at or below the floor.
  j->setCursor("a", 3500);
  j->setCursor("b", 3500);
  CHECK(j->enforceRetention(kT0) == 3000);  // r_0, whole; 3101..3500 wait for all of r_1
  j.reset();
  auto into = Journal::open(optionsFor(live, {"kafka"}));
  const SalvageReport r = salvageInto(dir.db(), *into);
  CHECK(r.floor == 3100);
  CHECK(r.readings == 1500);
  CHECK(r.first_seq == 3101);
  CHECK(r.last_seq == 4600);
  CHECK(r.missing() == 0);
}

TEST_CASE(
    "cursor moves ride with row commits at most once a second; a commit without rows writes them") {
  TempDir dir;
  FakeClock clock;
  auto j = Journal::open(optionsFor(dir, {"a"}, &clock));
  const SeriesId id = j->internSeries(kTemp);
  const auto fileCursor = [&] {
    return OtherConnection(dir.db()).queryInt("SELECT cursor FROM sinks WHERE name = 'a'");
  };
  const auto rowCommit = [&] {
    for (int i = 0; i < 10; ++i) j->append(id, i, kT0, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
  };
  rowCommit();
  clock.now += 100 * kNanosPerMilli;
  j->setCursor("a", 5);
  rowCommit();
  CHECK(j->cursor("a") == 5);
  CHECK(fileCursor() == 0);  // not yet: less than a second since the last write
  clock.now += kNanosPerSecond;
  rowCommit();
  CHECK(fileCursor() == 5);
  j->setCursor("a", 20);
  clock.now += 100 * kNanosPerMilli;
  rowCommit();
  CHECK(fileCursor() == 5);
  REQUIRE(j->commit());  // nothing pending, only the cursor: written
  CHECK(fileCursor() == 20);
  j.reset();
  CHECK(Journal::open(optionsFor(dir, {"a"}, &clock))->cursor("a") == 20);
}
