// buffer.synchronous = "full": the WAL's fdatasync runs on the journal's sync thread after the
// commit, and durableSeq() moves on only once a sync has covered the commit.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "buffer/journal.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;

struct TempDir : gw::test::TempDir {
  TempDir() : gw::test::TempDir("gw-walsync") {}
  fs::path db() const { return path / "state" / "journal.db"; }
};

/// The test hook: counts the syncs and can hold them until released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool held = false;
  int entered = 0;

  void hold() {
    std::lock_guard lock(mu);
    held = true;
  }
  void release() {
    {
      std::lock_guard lock(mu);
      held = false;
    }
    cv.notify_all();
  }
  void pass() {
    std::unique_lock lock(mu);
    ++entered;
    cv.notify_all();
    cv.wait(lock, [this] { return !held; });
  }
  bool waitEntered(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return entered >= n; });
  }
  int count() {
    std::lock_guard lock(mu);
    return entered;
  }
};

struct Hooked {
  Gate gate;
  Hooked() {
    setWalSyncHookForTests([this] { gate.pass(); });
  }
  ~Hooked() {
    gate.release();
    setWalSyncHookForTests({});
  }
};

/// What the onDurable callback was called with (on the sync thread).
struct DurableLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::uint64_t> seqs;
  void add(std::uint64_t s) {
    {
      std::lock_guard lock(mu);
      seqs.push_back(s);
    }
    cv.notify_all();
  }
  bool waitFor(std::uint64_t s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return !seqs.empty() && seqs.back() >= s; });
  }
  std::vector<std::uint64_t> all() {
    std::lock_guard lock(mu);
    return seqs;
  }
};

JournalOptions options(const TempDir& dir, Synchronous s = Synchronous::kFull) {
  JournalOptions o;
  o.path = dir.db();
  o.sinks = {"a"};
  o.synchronous = s;
  return o;
}

const Series kTemp{"press-7", "temperature", {}};

std::uint64_t commitRows(Journal& j, size_t n) {
  const SeriesId id = j.internSeries(kTemp);
  std::uint64_t last = 0;
  for (size_t i = 0; i < n; ++i)
    last = j.append(id, static_cast<double>(i), kT0 + static_cast<Nanos>(i), std::nullopt,
                    TimeReference::kReceive);
  REQUIRE(j.commit());
  return last;
}

bool waitDurable(Journal& j, std::uint64_t seq) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (j.durableSeq() < seq) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

TEST_CASE("synchronous = full: a commit is durable only once the sync thread has synced it") {
  Hooked hooked;
  TempDir dir;
  auto j = Journal::open(options(dir));
  DurableLog log;
  j->onDurable([&](std::uint64_t s) { log.add(s); });
  CHECK(j->durableSeq() == 0);

  hooked.gate.hold();
  CHECK(commitRows(*j, 10) == 10);
  CHECK(j->lastSeq() == 10);
  REQUIRE(hooked.gate.waitEntered(1));
  // The sync is held: committed, readable, but not durable, and nobody was told.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(j->durableSeq() == 0);
  CHECK(log.all().empty());

  hooked.gate.release();
  REQUIRE(log.waitFor(10));
  CHECK(j->durableSeq() == 10);
  CHECK(log.all() == std::vector<std::uint64_t>{10});
}

TEST_CASE("commits made while a sync runs are covered by the next one sync, not one each") {
  Hooked hooked;
  TempDir dir;
  auto j = Journal::open(options(dir));
  DurableLog log;
  j->onDurable([&](std::uint64_t s) { log.add(s); });

  hooked.gate.hold();
  commitRows(*j, 10);
  REQUIRE(hooked.gate.waitEntered(1));  // the first sync started, for seq 10
  commitRows(*j, 5);
  commitRows(*j, 5);
  commitRows(*j, 5);
  CHECK(j->durableSeq() == 0);
  hooked.gate.release();
  REQUIRE(log.waitFor(25));
  CHECK(j->durableSeq() == 25);
  // One sync for the first commit, one for the three made meanwhile.
  CHECK(log.all() == std::vector<std::uint64_t>{10, 25});
  CHECK(hooked.gate.count() == 2);
}

TEST_CASE("syncNow and the journal's destruction sync what was committed last") {
  Hooked hooked;
  TempDir dir;
  DurableLog log;
  std::uint64_t last = 0;
  SUBCASE("syncNow") {
    auto j = Journal::open(options(dir));
    commitRows(*j, 10);
    REQUIRE(waitDurable(*j, 10));
    hooked.gate.hold();
    commitRows(*j, 10);
    REQUIRE(hooked.gate.waitEntered(2));
    last = commitRows(*j, 10);
    CHECK(j->durableSeq() == 10);
    std::thread release([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      hooked.gate.release();
    });
    CHECK(j->syncNow() == last);  // waits for the running sync, then syncs the rest
    release.join();
    CHECK(j->durableSeq() == 30);
  }
  SUBCASE("destruction") {
    auto j = Journal::open(options(dir));
    j->onDurable([&](std::uint64_t s) { log.add(s); });
    hooked.gate.hold();
    commitRows(*j, 10);
    REQUIRE(hooked.gate.waitEntered(1));
    last = commitRows(*j, 10);  // not covered by the held sync
    std::thread release([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      hooked.gate.release();
    });
    j.reset();
    release.join();
    CHECK(log.all().back() == last);
    CHECK(hooked.gate.count() == 2);
  }
  auto again = Journal::open(options(dir));
  CHECK(again->lastSeq() == last);
  CHECK(again->durableSeq() == last);  // what a restart finds is durable (synced at open)
}

TEST_CASE("synchronous = normal and off: durable at the commit, the sync thread does nothing") {
  for (const Synchronous s : {Synchronous::kNormal, Synchronous::kOff}) {
    CAPTURE(static_cast<int>(s));
    Hooked hooked;
    TempDir dir;
    auto j = Journal::open(options(dir, s));
    hooked.gate.hold();  // would block a sync: there must be none
    CHECK(commitRows(*j, 10) == 10);
    CHECK(j->durableSeq() == 10);
    CHECK(j->syncNow() == 10);
    CHECK(hooked.gate.count() == 0);
  }
}

TEST_CASE("the WAL sync follows the journal written back after its -wal was deleted") {
  Hooked hooked;
  TempDir dir;
  auto j = Journal::open(options(dir));
  commitRows(*j, 100);
  REQUIRE(waitDurable(*j, 100));
  const fs::path wal = fs::path(dir.db()) += "-wal";
  REQUIRE(fs::exists(wal));
  fs::remove(wal);
  commitRows(*j, 50);  // into the deleted file, until the check
  REQUIRE(j->checkFile());
  CHECK(j->stats().restores == 1);
  // The written-back copy is synced: everything so far is durable.
  CHECK(j->durableSeq() == 150);
  const int before = hooked.gate.count();
  hooked.gate.hold();
  commitRows(*j, 50);
  REQUIRE(hooked.gate.waitEntered(before + 1));
  CHECK(j->durableSeq() == 150);
  // Nothing of this process has the deleted -wal open any more: the sync is on the new file.
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    CHECK_MESSAGE(target.find("journal.db-wal (deleted)") == std::string::npos, target);
  }
  hooked.gate.release();
  REQUIRE(waitDurable(*j, 200));
}

TEST_CASE("a commit of only a cursor move is synced too, not left to the next checkpoint") {
  Hooked hooked;
  TempDir dir;
  auto j = Journal::open(options(dir));
  commitRows(*j, 10);
  REQUIRE(waitDurable(*j, 10));
  REQUIRE(hooked.gate.waitEntered(1));
  j->setCursor("a", 5);
  REQUIRE(j->commit());  // no new seq
  CHECK(hooked.gate.waitEntered(2));
  CHECK(j->durableSeq() == 10);
}
