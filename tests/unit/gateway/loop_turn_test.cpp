// The loop's attribution of a source's turns and the sinks' reports (gateway/loop_work.h, issue
// 13): a turn of many messages is timed once, as "ingest"; a delivery report as "sinks".
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>

#include "buffer/journal.h"
#include "gateway/forwarder.h"
#include "gateway/loop_work.h"
#include "tests/support/journal_with_sinks.h"
#include "tests/support/temp_dir.h"

using namespace gw;

namespace {

constexpr Nanos kMs = kNanosPerMilli;

struct Meter {
  Nanos now = 1000 * kMs, cpu = 0;
  int mono_reads = 0, cpu_reads = 0;
  LoopWorkMeter meter{[this] { return ++mono_reads, now; }, [this] { return ++cpu_reads, cpu; }};
  std::size_t messages = 0;
  /// A message of the current turn that takes `took` (all of it on the CPU).
  void message(Nanos took) {
    meter.openTurn(LoopWorkKind::kIngest,
                   [this] { return std::to_string(messages) + " messages"; });
    ++messages;
    now += took;
    cpu += took;
    meter.markTurn();
  }
};

class CountingSink final : public Sink {
 public:
  const std::string& name() const override { return name_; }
  SendResult send(std::span<const ReadingRecord> batch) override {
    sent += batch.size();
    return {SendStatus::kDelivered, {}, {}};
  }
  std::atomic<std::size_t> sent{0};

 private:
  const std::string name_ = "fake";
};

}  // namespace

TEST_CASE("loop work: a source's turn and the sinks' reports have names of their own") {
  CHECK(loopWorkName(LoopWorkKind::kIngest) == "ingest");
  CHECK(loopWorkName(LoopWorkKind::kSinks) == "sinks");
  CHECK(kLoopWorkNames.size() == LoopWorkMeter::kKinds);
  for (std::size_t i = 0; i < kLoopWorkNames.size(); ++i)
    for (std::size_t j = i + 1; j < kLoopWorkNames.size(); ++j)
      CHECK(kLoopWorkNames[i] != kLoopWorkNames[j]);
}

TEST_CASE("loop work: a turn's messages are timed once, from its first message to its last") {
  Meter m;
  m.message(2 * kMs);
  const int cpu_reads_after_first = m.cpu_reads;
  for (int i = 0; i < 99; ++i) m.message(kMs / 10);
  // The CPU clock (a system call) is read when the turn opens, not per message.
  CHECK(m.cpu_reads == cpu_reads_after_first);
  CHECK(m.meter.turnOpen());
  // What runs after the last message and before the close (another handler) is not the turn's.
  m.now += 50 * kMs;
  m.meter.closeTurn();
  CHECK_FALSE(m.meter.turnOpen());
  const LoopWork w = m.meter.takeSinceCheck();
  CHECK(w.name == "ingest");
  CHECK(w.took == 2 * kMs + 99 * (kMs / 10));
  CHECK(w.cpu == -1);  // the first turn: no CPU clock read (the one before it was not long)
  CHECK(w.detail == "100 messages");
  CHECK(m.meter.max(LoopWorkKind::kIngest) == w.took);
  m.meter.closeTurn();  // none open: nothing recorded
  CHECK(m.meter.takeSinceCheck().took == 0);
}

TEST_CASE("loop work: a turn's CPU time is read only after a long turn (a system call)") {
  Meter m;
  const auto turn = [&](Nanos took) {
    m.message(took);
    m.meter.closeTurn();
    return m.meter.takeSinceCheck();
  };
  int reads = m.cpu_reads;
  CHECK(turn(kMs / 2).cpu == -1);  // short, and the first
  CHECK(turn(kMs / 2).cpu == -1);  // short after short: a steady stream reads no CPU clock
  CHECK(m.cpu_reads == reads);
  CHECK(turn(3 * kMs).cpu == -1);  // long, but the one before it was short
  reads = m.cpu_reads;
  const LoopWork w = turn(4 * kMs);  // after a long one: measured, at most its wall time
  CHECK(w.cpu == 4 * kMs);
  CHECK(m.cpu_reads == reads + 2);
  CHECK(turn(kMs / 2).cpu == kMs / 2);  // after a long one, even a short one
  reads = m.cpu_reads;
  CHECK(turn(kMs / 2).cpu == -1);
  CHECK(m.cpu_reads == reads);
}

TEST_CASE("loop work: another handler closes the turn before it runs; so does the loop watch") {
  Meter m;
  m.message(3 * kMs);
  m.meter.run(LoopWorkKind::kCommit, [&] { m.now += 7 * kMs; });
  CHECK_FALSE(m.meter.turnOpen());
  CHECK(m.meter.max(LoopWorkKind::kIngest) == 3 * kMs);  // the commit is not counted in it
  CHECK(m.meter.max(LoopWorkKind::kCommit) == 7 * kMs);
  // A new turn after it; the loop watch's check records it.
  m.message(4 * kMs);
  m.message(4 * kMs);
  const LoopWork w = m.meter.takeSinceCheck();
  CHECK(w.name == "ingest");
  CHECK(w.took == 8 * kMs);
  CHECK(w.detail == "3 messages");  // the counter as it was when the turn was recorded
  // A slice recorded after the fact (record()) closes an open turn of another kind first.
  m.message(kMs);
  m.meter.record(LoopWorkKind::kWindowClose, 2 * kMs, [] { return std::string(); });
  CHECK_FALSE(m.meter.turnOpen());
  CHECK(m.meter.recent(LoopWorkKind::kIngest) == 8 * kMs);
}

TEST_CASE("loop work: a sink's delivery report is timed as the loop's sinks work") {
  test::TempDir dir{"gw-loop-turn"};
  auto journal = test::openJournal(dir.path);
  const SeriesId id = journal->internSeries(Series{"press-7", "temperature", {}});
  for (int i = 0; i < 5; ++i) journal->append(id, i, i, std::nullopt, TimeReference::kReceive);
  REQUIRE(journal->commit());
  journal->syncNow();

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  LoopWorkMeter meter{&monoNow};
  ForwarderEnv env;
  env.clock.wall = &wallNow;
  env.clock.mono = &monoNow;
  env.loop_work = &meter;
  ForwarderOptions fo;
  fo.batch = 2;
  fo.min_interval = 0;
  auto sink = std::make_unique<CountingSink>();
  CountingSink& counting = *sink;
  Forwarder fw(io, *journal, std::move(sink), fo, std::move(env));
  fw.poke();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fw.cursor() < 5 && std::chrono::steady_clock::now() < deadline)
    io.run_one_for(std::chrono::milliseconds(50));
  REQUIRE(fw.cursor() == 5);
  CHECK(counting.sent == 5);
  // Three reports (2 + 2 + 1 records), each timed: one of them is the longest.
  CHECK(meter.max(LoopWorkKind::kSinks) > 0);
  CHECK(meter.longest().name == "sinks");
  const std::string detail = meter.longest().detail;
  CHECK((detail == "fake: 2 records reported" || detail == "fake: 1 records reported"));
  fw.stop();
}
