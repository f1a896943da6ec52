// The journal's pending tail and seq reservation (buffer/journal_tail.cpp, issue 16): readTail()
// gives pending records exactly as read() gives them once committed; nothing beyond a durable
// reservation is sendable; a journal left without closing (a crash: its files copied while open)
// goes on after the reservation, a clean close leaves no gap.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "buffer/journal.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;

struct Dir : gw::test::TempDir {
  Dir() : gw::test::TempDir("gw-tail") {}
  fs::path db() const { return path / "journal.db"; }
};

std::unique_ptr<Journal> openAt(const fs::path& db, std::vector<std::string> sinks = {"k"}) {
  JournalOptions o;
  o.path = db;
  o.sinks = std::move(sinks);
  o.synchronous = Synchronous::kFull;
  return Journal::open(o);
}

/// Holds the journal's WAL syncs back while held (setWalSyncHookForTests).
struct SyncGate {
  std::mutex mu;
  std::condition_variable cv;
  bool held = true;
  SyncGate() {
    setWalSyncHookForTests([this] {
      std::unique_lock lock(mu);
      cv.wait(lock, [this] { return !held; });
    });
  }
  void release() {
    {
      std::lock_guard lock(mu);
      held = false;
    }
    cv.notify_all();
  }
  ~SyncGate() {
    release();
    setWalSyncHookForTests({});
  }
};

/// One of each kind of record, with and without a device time and a NaN value.
void appendMixed(Journal& j, SeriesId id, int i) {
  j.append(id, i, kT0 + i * kNanosPerSecond, kT0 + i * kNanosPerSecond - 1234,
           TimeReference::kBroker);
  j.append(id, std::nan(""), kT0 + i, std::nullopt, TimeReference::kReceive);
  WindowStats w;
  w.start = kT0;
  w.size = 10 * kNanosPerSecond;
  w.count = 3;
  w.min = 1;
  w.max = 3;
  w.avg = 2;
  w.p95 = 3;
  j.appendAggregate(id, w);
  j.appendAlert(id, kT0 + 5, 42.5, R"({"rule":"hot","state":"firing"})");
}

void checkSame(const std::vector<ReadingRecord>& a, const std::vector<ReadingRecord>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i].seq == b[i].seq);
    CHECK(a[i].series == b[i].series);
    CHECK((a[i].kind == b[i].kind));
    CHECK(a[i].event_time == b[i].event_time);
    CHECK((std::isnan(a[i].value) ? std::isnan(b[i].value) : a[i].value == b[i].value));
    CHECK((a[i].device_time == b[i].device_time));
    CHECK((a[i].reference == b[i].reference));
    if (a[i].kind == RecordKind::kAggregate) CHECK(a[i].window == b[i].window);
    CHECK(a[i].alert == b[i].alert);
  }
}

}  // namespace

TEST_CASE("journal tail: pending records read as they read once committed") {
  Dir dir;
  auto j = openAt(dir.db());
  const SeriesId id = j->internSeries(Series{"press-7", "temperature", {{"line", "3"}}});
  appendMixed(*j, id, 1);
  REQUIRE(j->commit());
  appendMixed(*j, id, 2);
  appendMixed(*j, id, 3);
  CHECK(j->lastSeq() == 4);
  CHECK(j->sendableSeq() == 12);  // within the reservation made at open

  std::vector<ReadingRecord> tail;
  CHECK(j->readTail(0, 100, tail) == 12);
  REQUIRE(tail.size() == 12);
  // A limit inside the pending part, and a start inside it.
  std::vector<ReadingRecord> part;
  CHECK(j->readTail(2, 5, part) == 7);
  REQUIRE(part.size() == 5);
  CHECK(part.front().seq == 3);
  CHECK(part.back().seq == 7);
  CHECK(j->readTail(9, 100, part) == 12);
  REQUIRE(part.size() == 3);
  CHECK(part.front().seq == 10);
  CHECK(j->readTail(12, 100, part) == 12);
  CHECK(part.empty());

  REQUIRE(j->commit());
  std::vector<ReadingRecord> committed;
  j->read(0, 100, committed);
  checkSame(tail, committed);
}

TEST_CASE("journal tail: nothing beyond a durable reservation is sendable") {
  Dir dir;
  auto j = openAt(dir.db());
  const SeriesId id = j->internSeries(Series{"d", "m", {}});
  const std::uint64_t reserved_at_open = j->sendableSeq() + 16384;  // nothing appended yet
  CHECK(j->sendableSeq() == 0);
  {
    SyncGate gate;
    // 10,000 rows: fewer than half the reservation left after them, so this commit reserves
    // more, but that is not durable while the sync is held.
    for (int i = 0; i < 10000; ++i)
      j->append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
    for (int i = 0; i < 10000; ++i)
      j->append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
    CHECK(j->durableSeq() == 0);
    CHECK(j->sendableSeq() == reserved_at_open);
    std::vector<ReadingRecord> out;
    CHECK(j->readTail(0, 100000, out) == reserved_at_open);
    CHECK(out.size() == reserved_at_open);
    CHECK(out.back().seq == reserved_at_open);
    gate.release();
    CHECK(j->syncNow() == 10000);
  }
  CHECK(j->sendableSeq() == 20000);  // the second reservation is durable now
}

TEST_CASE(
    "journal tail: after a crash seqs go on after the reservation; a clean close leaves "
    "no gap") {
  Dir dir;
  const fs::path crashed = dir.path / "crashed";
  fs::create_directories(crashed);
  std::vector<ReadingRecord> sent;
  {
    auto j = openAt(dir.db());
    const SeriesId id = j->internSeries(Series{"d", "m", {}});
    for (int i = 1; i <= 3; ++i) j->append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
    REQUIRE(j->syncNow() == 3);
    j->setCursor("k", 3);
    REQUIRE(j->commit());
    // Two more records reach a sink before they are committed; then the process dies: the files
    // as they are on disk now are what the next start finds.
    j->append(id, 4, kT0 + 4, std::nullopt, TimeReference::kReceive);
    j->append(id, 5, kT0 + 5, std::nullopt, TimeReference::kReceive);
    CHECK(j->readTail(3, 100, sent) == 5);
    REQUIRE(sent.size() == 2);
    j->syncNow();
    for (const char* f : {"journal.db", "journal.db-wal"}) fs::copy_file(dir.path / f, crashed / f);
    // The clean close: the pending rows are committed first (what the pipeline's stop does).
    REQUIRE(j->commit());
  }
  {
    auto j = openAt(crashed / "journal.db");
    CHECK(j->lastSeq() == 16384);    // the reservation made at open
    CHECK(j->cursor("k") == 16384);  // it had confirmed every row, so the gap too
    CHECK(j->stats().sinks.at("k").backlog == 0);
    const SeriesId id = j->internSeries(Series{"d", "m", {}});
    CHECK(j->append(id, 9, kT0, std::nullopt, TimeReference::kReceive) == 16385);
    REQUIRE(j->commit());
    std::vector<ReadingRecord> out;
    CHECK(j->readTail(j->cursor("k"), 100, out) == 16385);
    REQUIRE(out.size() == 1);
    CHECK(out[0].seq == 16385);
  }
  {
    auto j = openAt(dir.db());
    CHECK(j->lastSeq() == 5);
    const SeriesId id = j->internSeries(Series{"d", "m", {}});
    CHECK(j->append(id, 6, kT0, std::nullopt, TimeReference::kReceive) == 6);
  }
}

TEST_CASE("journal tail: a sink behind a gap passes it with the next batch") {
  Dir dir;
  const fs::path crashed = dir.path / "crashed";
  fs::create_directories(crashed);
  {
    auto j = openAt(dir.db());
    const SeriesId id = j->internSeries(Series{"d", "m", {}});
    for (int i = 1; i <= 3; ++i) j->append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
    j->syncNow();
    for (const char* f : {"journal.db", "journal.db-wal"}) fs::copy_file(dir.path / f, crashed / f);
  }
  auto j = openAt(crashed / "journal.db");
  CHECK(j->cursor("k") == 0);
  CHECK(j->lastSeq() == 16384);
  std::vector<ReadingRecord> out;
  // Rows 1..3, then nothing until the reservation's end: the read is complete through it.
  CHECK(j->readTail(0, 100, out) == 16384);
  CHECK(out.size() == 3);
  CHECK(j->readTail(0, 2, out) == 2);
  const SeriesId id = j->internSeries(Series{"d", "m", {}});
  j->append(id, 4, kT0 + 4, std::nullopt, TimeReference::kReceive);
  CHECK(j->readTail(3, 100, out) == 16385);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 16385);
}

TEST_CASE("journal tail: the last commit's rows a sink had not read come from memory") {
  // Issue 16: at a steady rate the commit moved rows a paced sink had not read yet into SQLite,
  // and the sink's next read took WAL read locks and page reads on the loop. The last commit's
  // rows stay in memory: here SQLite's copy is deleted behind the journal's back, and the read
  // still returns them; rows of an older commit are read from SQLite (so they are gone here).
  Dir dir;
  auto j = openAt(dir.db());
  const SeriesId id = j->internSeries(Series{"press-7", "temperature", {{"line", "3"}}});
  appendMixed(*j, id, 1);
  appendMixed(*j, id, 2);
  appendMixed(*j, id, 3);
  std::vector<ReadingRecord> pending;
  CHECK(j->readTail(0, 100, pending) == 12);  // read while pending
  REQUIRE(j->commit());
  j->syncNow();
  CHECK(j->lastSeq() == 12);
  std::vector<ReadingRecord> committed;
  j->read(0, 100, committed);
  checkSame(pending, committed);

  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &raw) == SQLITE_OK);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  sqlite3_busy_timeout(db.get(), 5000);
  REQUIRE(sqlite3_exec(db.get(), "DELETE FROM r_0", nullptr, nullptr, nullptr) == SQLITE_OK);

  std::vector<ReadingRecord> tail;
  CHECK(j->readTail(4, 100, tail) == 12);
  REQUIRE(tail.size() == 8);
  checkSame(tail, std::vector<ReadingRecord>(pending.begin() + 4, pending.end()));
  CHECK(j->readTail(4, 3, tail) == 7);  // a limit inside the tail
  REQUIRE(tail.size() == 3);
  CHECK(tail.front().seq == 5);

  // Across the tail into what is pending.
  appendMixed(*j, id, 4);
  CHECK(j->readTail(10, 100, tail) == 16);
  REQUIRE(tail.size() == 6);
  CHECK(tail.front().seq == 11);
  CHECK(tail.back().seq == 16);

  // The next commit's rows are the tail now: rows 1–12 come from SQLite, where they are gone.
  REQUIRE(j->commit());
  CHECK(j->readTail(4, 100, tail) == 16);
  REQUIRE(tail.size() == 4);
  CHECK(tail.front().seq == 13);
  // A commit of no rows keeps the tail.
  REQUIRE(j->commit());
  CHECK(j->readTail(12, 100, tail) == 16);
  CHECK(tail.size() == 4);
}
