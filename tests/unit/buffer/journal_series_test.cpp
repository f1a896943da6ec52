// Series past JournalOptions::pinned_series (issue 13: a device that invents names must not grow
// the gateway's memory with every name): a bounded cache in memory, SQLite the authority.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "buffer/journal.h"
#include "buffer/salvage.h"
#include "buffer/series_table.h"
#include "buffer/sqlite_journal.h"
#include "tests/support/sqlite_connection.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;

// A device inventing names: device, metric and tags all new each time.
Series invented(int i) {
  return Series{"dev-" + std::to_string(i),
                "m-" + std::to_string(i % 7919),
                {{"line", "l" + std::to_string(i)}}};
}

const SeriesTable& tableOf(Journal& j) {
  return dynamic_cast<detail::SqliteJournal&>(j).seriesTable();
}

JournalOptions small(const fs::path& db, std::size_t pinned, std::size_t cache,
                     std::vector<std::string> sinks = {"a"}) {
  JournalOptions o;
  o.path = db;
  o.sinks = std::move(sinks);
  o.pinned_series = pinned;
  o.series_cache = cache;
  o.synchronous = Synchronous::kNormal;  // durable at commit: readTail() reads the pending rows
  return o;
}

bool sameAs(const ReadingRecord& r, const Series& s) { return *r.series == s; }

// `n` invented series, one reading each (value = i), committed every 1,000, sink "a" confirming
// everything committed: what a flood of new names with a healthy sink looks like.
void flood(Journal& j, int from, int n, std::vector<SeriesId>* ids = nullptr, size_t batch = 1000) {
  for (int i = from; i < from + n; ++i) {
    const SeriesId id = j.internSeries(invented(i));
    if (ids) ids->push_back(id);
    j.append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
    if (j.pending() >= batch) {
      REQUIRE(j.commit());
      j.setCursor("a", j.lastSeq());
    }
  }
  REQUIRE(j.commit());
  j.setCursor("a", j.lastSeq());
}

// Appends `n` invented names from `next` on (value = index), committed together.
void appendInvented(Journal& j, int& next, int n) {
  for (int i = 0; i < n; ++i, ++next)
    j.append(j.internSeries(invented(next)), next, kT0 + next, std::nullopt,
             TimeReference::kReceive);
  REQUIRE(j.commit());
}

// `rounds` commits of `per` new names; sink "b" (reader `b`) reads each after `b_upto` and both
// sinks confirm it. Returns b's new position.
std::uint64_t bothConfirm(Journal& j, int& next, int rounds, int per, std::uint64_t b_upto,
                          Journal::Reader b) {
  std::vector<ReadingRecord> sent;
  for (int round = 0; round < rounds; ++round) {
    appendInvented(j, next, per);
    b_upto = j.readTail(b_upto, 1000, sent, b);
    j.setCursor("b", b_upto);
    j.setCursor("a", b_upto);
  }
  return b_upto;
}

// Reads every record of `j` and checks each carries invented(value)'s name; returns how many.
std::size_t readAllInvented(Journal& j) {
  std::vector<ReadingRecord> out;
  std::uint64_t after = 0;
  std::size_t seen = 0;
  for (;;) {
    j.read(after, 4096, out);
    if (out.empty()) break;
    for (const auto& r : out) {
      REQUIRE(sameAs(r, invented(static_cast<int>(r.value))));
      ++seen;
    }
    after = out.back().seq;
  }
  return seen;
}

}  // namespace

TEST_CASE("series table: past the pinned ids a bounded cache; safe entries evicted, slots reused") {
  SeriesTable t(0, 10, 100);
  std::size_t high = 0;
  for (int i = 0; i < 100000; ++i) {
    t.beginCall();
    REQUIRE(t.add(invented(i)) == static_cast<SeriesId>(i));
    t.setEvictable(UINT64_MAX, t.size());  // every row written, nothing held
    high = std::max(high, t.memoryBytes());
  }
  MESSAGE("100,000 invented names, 10 pinned, 100 cached: ", high, " bytes at most");
  CHECK(t.cachedCount() == 100);
  CHECK(t.cacheSlots() == 100);
  CHECK(t.evictions() == 100000 - 10 - 100);
  // The pinned entries, 100 slots of ~170 bytes and two indexes: not 100,000 names (~10 MB).
  CHECK(high < SeriesTable::kFilterBits / 8 + 64 * 1024);  // + the 1 MiB filter of names
  CHECK(t[3] == invented(3));                              // pinned
  CHECK(t.find(invented(3)) == 3);
  CHECK(t.find(invented(99999)) == 99999);             // cached
  CHECK(t.find(invented(500)) == SeriesTable::kNoId);  // evicted: the owner asks SQLite
  CHECK(t.incomplete());
  CHECK(*t.get(99999) == invented(99999));
  CHECK(t.get(500) == nullptr);
  t.beginCall();
  CHECK(t.load(500, invented(500)) == invented(500));
  CHECK(t.find(invented(500)) == 500);
}

TEST_CASE("series table: not evicted while unwritten, held past the cursor, or used by the call") {
  SeriesTable t(0, 0, 4);
  for (int i = 0; i < 4; ++i) t.add(invented(i));
  t.setEvictable(UINT64_MAX, 0);  // no row written: nothing may go
  t.beginCall();
  t.add(invented(4));
  CHECK(t.cachedCount() == 5);  // grew past its capacity
  CHECK(t.evictions() == 0);
  t.setEvictable(10, 5);
  const InternedSeries* held = t.get(0, 11);  // handed out with seq 11 > 10
  const InternedSeries* now = t.get(1);       // used in this call
  t.add(invented(5));
  t.add(invented(6));
  CHECK(t.get(0) == held);
  CHECK(*held == invented(0));
  CHECK(t.get(1) == now);
  CHECK(*now == invented(1));
  // Over capacity it shrinks back: two evictions per insert while over.
  t.beginCall();
  t.setEvictable(11, 7);
  t.add(invented(7));
  t.beginCall();
  t.setEvictable(11, 8);
  t.add(invented(8));
  CHECK(t.cachedCount() <= 4);
}

TEST_CASE("journal: 100,000 invented names with 10 pinned; memory bounded, names and ids kept") {
  gw::test::TempDir dir("gw-journal-series");
  const fs::path db = dir.path / "journal.db";
  std::vector<SeriesId> ids;
  {
    auto j = Journal::open(small(db, 10, 64));
    const SeriesTable& t = tableOf(*j);
    const std::size_t before = t.memoryBytes();
    flood(*j, 0, 100000, &ids, 100);
    const std::size_t grown = t.memoryBytes() - before;
    MESSAGE("series table after 100,000 invented names: ", t.memoryBytes(), " bytes (",
            t.cachedCount(), " cached in ", t.cacheSlots(), " slots, ", t.evictions(), " evicted)");
    // Without the cache: ~10 MB (100,000 names and metrics).
    CHECK(grown < SeriesTable::kFilterBits / 8 + 64 * 1024);
    CHECK(t.cacheSlots() <= 64 + 100);  // a commit's names at most beyond the capacity
    for (int i = 0; i < 100000; ++i)
      REQUIRE(ids[static_cast<size_t>(i)] == static_cast<SeriesId>(i));
    // An evicted name interned again: its old id (found in SQLite), not a new one.
    CHECK(j->internSeries(invented(5)) == 5);
    CHECK(j->internSeries(invented(54321)) == 54321);
    CHECK(j->internSeries(invented(100000)) == 100000);  // new

    // Every record read back carries its own name, read back from SQLite where evicted.
    CHECK(readAllInvented(*j) == 100000);
    CHECK(t.cacheSlots() <= 64 + 4096 + 100);  // a read's batch stays valid as a whole

    // Pending records of evicted series (readTail: from memory, names read back).
    const std::uint64_t last = j->lastSeq();
    for (int i : {7, 70000, 99})
      j->append(j->internSeries(invented(i)), i, kT0, std::nullopt, TimeReference::kReceive);
    // New names not written yet: the three (written, held by no sink) are evicted again.
    const std::uint64_t evicted = t.evictions();
    for (int i = 100001; i < 100501; ++i) j->internSeries(invented(i));
    CHECK(t.evictions() > evicted);
    std::vector<ReadingRecord> tail;
    REQUIRE(j->readTail(last, 3, tail) == last + 3);
    REQUIRE(tail.size() == 3);
    CHECK(sameAs(tail[0], invented(7)));
    CHECK(sameAs(tail[1], invented(70000)));
    CHECK(sameAs(tail[2], invented(99)));
    REQUIRE(j->commit());

    // gatewayctl tail: a device past the pinned ids found through the index.
    std::vector<ReadingRecord> dev;
    j->readDevice("dev-70000", 0, 10, 1'000'000, dev);
    REQUIRE(dev.size() == 2);
    CHECK(dev[0].value == 70000);
    CHECK(sameAs(dev[1], invented(70000)));
    j->readDevice("dev-3", 0, 10, 1'000'000, dev);  // pinned
    REQUIRE(dev.size() == 1);
    CHECK(sameAs(dev[0], invented(3)));
    // Not written yet: found in the cache.
    j->append(j->internSeries(invented(200000)), 200000, kT0, std::nullopt,
              TimeReference::kReceive);
    REQUIRE(j->commit());
    j->readDevice("dev-200000", 0, 10, 1'000'000, dev);
    CHECK(dev.size() == 1);
  }
  // Reopened: the pinned ids loaded, the rest read back when needed; ids the same.
  {
    auto j = Journal::open(small(db, 10, 64));
    CHECK(tableOf(*j).cachedCount() == 0);
    CHECK(j->internSeries(invented(5)) == 5);
    CHECK(j->internSeries(invented(3)) == 3);
    CHECK(j->internSeries(invented(200000)) == 100501);
    CHECK(j->internSeries(invented(300000)) == 100502);  // new
    CHECK(j->series(54321) == invented(54321));
    std::vector<ReadingRecord> out;
    j->read(0, 4096, out);
    REQUIRE(out.size() == 4096);
    for (const auto& r : out) REQUIRE(sameAs(r, invented(static_cast<int>(r.value))));
  }
  // Salvaged into another journal with the same limits: names intact.
  gw::test::TempDir live_dir("gw-journal-series-live");
  auto live = Journal::open(small(live_dir.path / "journal.db", 10, 64, {"kafka"}));
  const SalvageReport r = salvageInto(db, *live);
  CHECK(r.no_series == 0);
  CHECK(r.readings == 100000 + 3 + 1);
  CHECK(readAllInvented(*live) == r.readings);
}

TEST_CASE("journal: a cached series a sink may still hold is not evicted (issue 13)") {
  gw::test::TempDir dir("gw-journal-series-held");
  // "windows" is a replay point: its cursor (left at 0) holds nothing.
  JournalOptions o = small(dir.path / "journal.db", 0, 8, {"a", "windows"});
  o.sinks_without_series = {"windows"};
  auto j = Journal::open(o);
  const SeriesTable& t = tableOf(*j);
  for (int i = 0; i < 8; ++i)
    j->append(j->internSeries(invented(i)), i, kT0, std::nullopt, TimeReference::kReceive);
  REQUIRE(j->commit());
  // Sink "a" reads them (as a forwarder's batch in flight: above its cursor, 0).
  std::vector<ReadingRecord> batch;
  REQUIRE(j->readerOf("windows") == Journal::kNoReader);
  REQUIRE(j->readTail(0, 100, batch, j->readerOf("a")) == 8);
  REQUIRE(batch.size() == 8);
  std::vector<const InternedSeries*> held;
  for (const auto& r : batch) held.push_back(r.series);
  // Many new names while the batch is out: its series stay where they are, unchanged.
  std::vector<ReadingRecord> other;
  for (int i = 8; i < 2000; ++i) {
    j->append(j->internSeries(invented(i)), i, kT0, std::nullopt, TimeReference::kReceive);
    if (j->pending() >= 50) REQUIRE(j->commit());
  }
  REQUIRE(j->commit());
  for (int i = 0; i < 8; ++i) {
    CHECK(batch[static_cast<size_t>(i)].series == held[static_cast<size_t>(i)]);
    CHECK(sameAs(batch[static_cast<size_t>(i)], invented(i)));
  }
  const std::uint64_t evicted = t.evictions();
  CHECK(evicted > 1000);  // the others went
  CHECK(t.cachedCount() <= 8 + 8 + 50);
  // Confirmed: they may go too, and the cache is back at its capacity.
  j->setCursor("a", 8);
  for (int i = 2000; i < 2100; ++i) {
    j->append(j->internSeries(invented(i)), i, kT0, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
    j->setCursor("a", j->lastSeq());
  }
  // (Were the replay point's cursor counted, the first 8 would stay: 9 or more.)
  CHECK(t.cachedCount() <= 8);
}

TEST_CASE("journal: a sink that is down keeps only the series it read (issue 13)") {
  gw::test::TempDir dir("gw-journal-series-down");
  constexpr std::size_t kCache = 256;
  constexpr std::size_t kBatch = 100;  // sink "a"'s batch, held while it retries
  JournalOptions o = small(dir.path / "journal.db", 0, kCache, {"a", "b"});
  auto j = Journal::open(o);
  const SeriesTable& t = tableOf(*j);
  const Journal::Reader a = j->readerOf("a"), b = j->readerOf("b");
  REQUIRE(a != Journal::kNoReader);
  REQUIRE(b != Journal::kNoReader);
  REQUIRE(a != b);
  CHECK(j->readerOf("unknown") == Journal::kNoReader);
  int next = 0;
  const auto appendNames = [&](int n) { appendInvented(*j, next, n); };
  // Sink "a" reads one batch and never confirms it: its forwarder retries, reading the same
  // batch again each time (gateway/forwarder.cpp).
  appendNames(static_cast<int>(kBatch));
  std::vector<ReadingRecord> held;
  REQUIRE(j->readTail(0, kBatch, held, a) == kBatch);
  std::vector<const InternedSeries*> where;
  for (const auto& r : held) where.push_back(r.series);
  // Sink "b" reads and confirms 20,000 records of new names, 50 at a time; "a" retries its batch
  // every 1,000.
  std::vector<ReadingRecord> sent, retried;
  std::uint64_t b_upto = 0;
  std::size_t most = 0;
  while (next < 20000 + static_cast<int>(kBatch)) {
    appendNames(50);
    b_upto = j->readTail(b_upto, 1000, sent, b);
    REQUIRE(!sent.empty());
    for (const auto& r : sent) REQUIRE(sameAs(r, invented(static_cast<int>(r.value))));
    j->setCursor("b", b_upto);
    if (next % 1000 == 0) {
      REQUIRE(j->readTail(0, kBatch, retried, a) == kBatch);
      for (size_t i = 0; i < kBatch; ++i) REQUIRE(retried[i].series == where[i]);
    }
    most = std::max(most, t.cachedCount());
  }
  REQUIRE(b_upto == j->lastSeq());
  MESSAGE("20,000 names through sink b while sink a holds ", kBatch, ": ", most,
          " cached at most (capacity ", kCache, "), ", t.evictions(), " evictions");
  // Bounded: the capacity, a's batch, the 50 names of one commit that "b" has not read yet.
  CHECK(most <= kCache + kBatch + 50);
  CHECK(t.cacheSlots() <= kCache + kBatch + 50);
  // a's batch: where it was, unchanged.
  for (size_t i = 0; i < kBatch; ++i) {
    CHECK(held[i].series == where[i]);
    CHECK(sameAs(held[i], invented(static_cast<int>(i))));
  }
  // "a" is back and confirms everything: its batch may go too.
  j->setCursor("a", j->lastSeq());
  const std::uint64_t evicted = t.evictions();
  b_upto = bothConfirm(*j, next, 20, 50, b_upto, b);
  CHECK(t.cachedCount() <= kCache);
  CHECK(t.evictions() >= evicted + 1000);
  // The names "a" held are read back from SQLite, correct.
  std::vector<ReadingRecord> again;
  j->read(0, kBatch, again);
  REQUIRE(again.size() == kBatch);
  for (const auto& r : again) CHECK(sameAs(r, invented(static_cast<int>(r.value))));
}

TEST_CASE("journal: retention moving a sink's cursor past its batch keeps that batch's series") {
  // The caps drop rows a sink has not confirmed while its worker may still be sending them: the
  // cursor moves past them, but what the sink holds stays until the sink itself confirms.
  gw::test::TempDir dir("gw-journal-series-retention");
  constexpr std::size_t kCache = 64;
  constexpr int kBatch = 50;
  JournalOptions o = small(dir.path / "journal.db", 0, kCache, {"a", "b"});
  o.max_age = 60 * kNanosPerSecond;
  auto j = Journal::open(o);
  const SeriesTable& t = tableOf(*j);
  const Journal::Reader a = j->readerOf("a"), b = j->readerOf("b");
  int next = 0;
  const auto appendNames = [&](int n) { appendInvented(*j, next, n); };
  appendNames(kBatch);
  std::vector<ReadingRecord> held;
  REQUIRE(j->readTail(0, kBatch, held, a) == static_cast<size_t>(kBatch));
  std::vector<const InternedSeries*> where;
  for (const auto& r : held) where.push_back(r.series);
  // Every row is past max_age: dropped unsent, both cursors moved past them.
  CHECK(j->enforceRetention(wallNow() + 10 * o.max_age) == static_cast<std::uint64_t>(kBatch));
  REQUIRE(j->cursor("a") == static_cast<std::uint64_t>(kBatch));
  // 2,000 new names through "b" while "a"'s worker still sends its batch.
  std::vector<ReadingRecord> sent;
  std::uint64_t b_upto = j->cursor("b");
  while (next < 2000) {
    appendNames(25);
    b_upto = j->readTail(b_upto, 1000, sent, b);
    j->setCursor("b", b_upto);
  }
  CHECK(t.evictions() > 1000);
  for (int i = 0; i < kBatch; ++i) {
    const auto k = static_cast<size_t>(i);
    CHECK(held[k].series == where[k]);
    CHECK(sameAs(held[k], invented(i)));
  }
  // The batch is done (a confirm below the moved cursor): its series may go now.
  j->setCursor("a", static_cast<std::uint64_t>(kBatch));
  CHECK(j->cursor("a") == static_cast<std::uint64_t>(kBatch));
  b_upto = bothConfirm(*j, next, 10, 25, b_upto, b);
  CHECK(t.cachedCount() <= kCache);
}

TEST_CASE("series table: holding readers past kReaderSlots share the last slot") {
  SeriesTable t(0, 0, 1);
  const auto addAndRead = [&](int i, std::uint32_t reader, std::uint64_t seq) {
    t.beginCall();
    const SeriesId id = t.add(invented(i));
    t.beginCall(reader);
    REQUIRE(t.get(id, seq) != nullptr);
    return id;
  };
  SeriesTable::HeldUpto upto;
  upto.fill(UINT64_MAX);
  // Reader 7 (slot kReaderSlots - 1) read seq 10; its slot's bound is 9: the entry stays.
  upto[SeriesTable::kReaderSlots - 1] = 9;
  const SeriesId held = addAndRead(0, 7, 10);
  t.setEvictable(upto, 100);
  addAndRead(1, SeriesTable::kNoReader, 11);
  t.beginCall();
  CHECK(t.get(held) != nullptr);
  // A read without a reader (seq 11) holds nothing past its call.
  upto[SeriesTable::kReaderSlots - 1] = 10;
  t.setEvictable(upto, 100);
  t.beginCall();
  t.add(invented(2));
  t.beginCall();
  CHECK(t.get(held) == nullptr);  // evicted once its slot's bound reached 10
}

TEST_CASE("journal: a schema-7 journal is upgraded in place: index series_name, rows kept") {
  gw::test::TempDir dir("gw-journal-series-v7");
  const fs::path db = dir.path / "journal.db";
  {
    auto j = Journal::open(small(db, 2, 4));
    flood(*j, 0, 50);
  }
  {
    gw::test::SqliteConnection v7(db);
    REQUIRE(v7.exec("DROP INDEX series_name; PRAGMA user_version = 7;") == SQLITE_OK);
  }
  auto j = Journal::open(small(db, 2, 4));
  {
    gw::test::SqliteConnection check(db);
    CHECK(check.queryInt("PRAGMA user_version") == 8);
    CHECK(check.queryInt(
              "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'series_name'") ==
          1);
    CHECK(check.queryInt("SELECT count(*) FROM series") == 50);
  }
  CHECK(j->internSeries(invented(40)) == 40);  // through the index
  std::vector<ReadingRecord> out;
  j->read(0, 100, out);
  REQUIRE(out.size() == 50);
  for (const auto& r : out) CHECK(sameAs(r, invented(static_cast<int>(r.value))));
}

TEST_CASE("journal: the cost of a new name past the pinned ids (measured, not checked)") {
  // Each new name: a lookup in memory and in SQLite (index series_name), its series row and
  // index entry at the commit; the sink reads its record from memory. Against every series
  // pinned (no lookup, no eviction).
  constexpr int kNames = 50000;
  double us[2] = {0, 0};
  for (int pass = 0; pass < 2; ++pass) {
    gw::test::TempDir dir("gw-journal-series-cost");
    JournalOptions o =
        small(dir.path / "journal.db", pass == 0 ? SeriesTable::kAllPinned : 0, 16384);
    auto j = Journal::open(o);
    // The table past its capacity and evicting from the start.
    flood(*j, 0, 20000, nullptr, 500);
    std::vector<ReadingRecord> batch;
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t sent = j->lastSeq();
    for (int i = 0; i < kNames; ++i) {
      j->append(j->internSeries(invented(1000000 + i)), i, kT0, std::nullopt,
                TimeReference::kReceive);
      if (j->pending() >= 500) {
        REQUIRE(j->commit());
        sent = j->readTail(sent, 1000, batch);
        j->setCursor("a", std::min(sent, j->lastSeq()));
      }
    }
    REQUIRE(j->commit());
    us[pass] =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        kNames;
  }
  MESSAGE("a new name, its reading, commit and sink read: ", us[0], " us all pinned, ", us[1],
          " us past the pinned ids (cache 16,384, evicting)");
}
