#include "buffer/journal.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

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

// A second connection to the same file, as the sqlite3 CLI would open it.
struct OtherConnection {
  sqlite3* db = nullptr;
  explicit OtherConnection(const fs::path& p) {
    REQUIRE(sqlite3_open(p.string().c_str(), &db) == SQLITE_OK);
  }
  ~OtherConnection() { sqlite3_close(db); }
  int exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }
  std::int64_t queryInt(const char* sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
    std::int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
  }
};

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
  const Series* p = &j->series(first);
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
    auto j = Journal::open(optionsFor(dir));
    addRows(*j, j->internSeries(kTemp), 10);
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
    auto j = Journal::open(optionsFor(dir));
    CHECK(j->cursor("a") == 5);
    CHECK(j->cursor("b") == 2);
  }
  {
    // "b" not configured: its row is kept but ignored; "c" is new.
    auto j = Journal::open(optionsFor(dir, {"a", "c"}));
    CHECK(j->cursor("b") == 0);
    CHECK(j->cursor("c") == 0);  // starts at the oldest row still buffered
    CHECK(j->stats().sinks.count("b") == 0);
    j->setCursor("c", 10);
    REQUIRE(j->commit());
    CHECK(j->enforceRetention(kT0) == 5);  // "a" holds rows 6..10 back, "b" nothing
  }
  {
    auto j = Journal::open(optionsFor(dir, {"a", "b", "c"}));
    CHECK(j->cursor("a") == 5);
    CHECK(j->cursor("c") == 10);
    // Rows 3..5 went while "b" was not configured: counted as dropped for it.
    CHECK(j->cursor("b") == 5);
    CHECK(j->stats().sinks.at("b").dropped == 3);
    CHECK(j->stats().sinks.at("a").dropped == 0);
  }
}

TEST_CASE("retention deletes only rows every sink confirmed, in bounded steps") {
  TempDir dir;
  auto j = Journal::open(optionsFor(dir));
  addRows(*j, j->internSeries(kTemp), 100);
  CHECK(j->enforceRetention(kT0) == 0);  // no sink confirmed anything
  j->setCursor("a", 60);
  j->setCursor("b", 40);
  // Uncommitted cursor moves count too (they are written with the deletion).
  CHECK(j->enforceRetention(kT0, 15) == 40);
  CHECK(j->stats().rows == 60);
  const auto left = seqs(*j);
  REQUIRE(left.size() == 60);
  CHECK(left.front() == 41);
  CHECK(left.back() == 100);
  CHECK(j->enforceRetention(kT0) == 0);
  CHECK(j->stats().sinks.at("a").dropped == 0);
  CHECK(j->stats().sinks.at("b").dropped == 0);

  j->setCursor("a", 100);
  j->setCursor("b", 100);
  CHECK(j->enforceRetention(kT0, 1) == 16);  // at most 16 transactions of `step` rows a call
  CHECK(j->stats().rows == 44);
  CHECK(j->enforceRetention(kT0) == 44);
  CHECK(j->stats().rows == 0);
  CHECK(j->stats().last_seq == 100);
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
  const double normal = fillForBench(optionsFor(dir), kRows, kBatch);
  const double file_per_row = static_cast<double>(fs::file_size(dir.db())) / kRows;
  double table_per_row = -1, payload_per_row = -1;
  {
    OtherConnection db(dir.db());
    if (db.exec("SELECT 1 FROM dbstat LIMIT 1") == SQLITE_OK) {  // dbstat is compiled in
      table_per_row =
          static_cast<double>(db.queryInt("SELECT sum(pgsize) FROM dbstat WHERE name = 'r'")) /
          kRows;
      payload_per_row =
          static_cast<double>(db.queryInt("SELECT sum(payload) FROM dbstat WHERE name = 'r'")) /
          kRows;
    }
  }
  TempDir dir_full;
  JournalOptions full = optionsFor(dir_full);
  full.synchronous_full = true;
  const double full_rate = fillForBench(full, kRows / 5, kBatch);
  MESSAGE("journal: " << kRows << " rows: file " << file_per_row << " B/row, table r "
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
}
