// The event loop's work meter (gateway/loop_work.h): which named handler held the loop longest,
// per 10 s bucket and since start, measured with an injected clock.
#include "gateway/loop_work.h"

#include <doctest/doctest.h>

#include <string>

using namespace gw;

namespace {

constexpr Nanos kMs = kNanosPerMilli;

struct Fixture {
  Nanos now = 1000 * kMs, cpu = 0;
  LoopWorkMeter meter{[this] { return now; }, [this] { return cpu; }};
  // A handler that "takes" `took` on the injected clock, half of it on the CPU.
  void runFor(LoopWorkKind kind, Nanos took, std::string detail = {}) {
    meter.run(
        kind,
        [&] {
          now += took;
          cpu += took / 2;
        },
        [detail] { return detail; });
  }
};

}  // namespace

TEST_CASE("the longest named handler is the one reported, with what it did") {
  Fixture f;
  f.runFor(LoopWorkKind::kCommit, 3 * kMs, "900 rows");
  f.runFor(LoopWorkKind::kRetention, 24 * kMs, "131072 rows removed");
  f.runFor(LoopWorkKind::kWindowClose, 2 * kMs, "up to 1000 windows");

  const LoopWork since = f.meter.takeSinceCheck();
  CHECK(since.name == "retention");
  CHECK(since.took == 24 * kMs);
  CHECK(since.cpu == 12 * kMs);  // the rest of it the loop thread waited for a CPU
  CHECK(since.detail == "131072 rows removed");
  // The next check starts a new span.
  CHECK(f.meter.takeSinceCheck().took == 0);
  f.runFor(LoopWorkKind::kCommit, 5 * kMs, "1000 rows");
  CHECK(f.meter.takeSinceCheck().name == "commit");

  CHECK(f.meter.longest().name == "retention");
  CHECK(f.meter.longest().detail == "131072 rows removed");
  CHECK(f.meter.longestRecent().name == "retention");
  CHECK(f.meter.recent(LoopWorkKind::kCommit) == 5 * kMs);
  CHECK(f.meter.max(LoopWorkKind::kWindowClose) == 2 * kMs);
  CHECK(f.meter.max(LoopWorkKind::kAlertTick) == 0);
}

TEST_CASE("recent figures cover the current and the previous bucket; the maximum stays") {
  Fixture f;
  f.runFor(LoopWorkKind::kRetention, 20 * kMs);
  f.meter.rotate();
  f.runFor(LoopWorkKind::kCommit, 4 * kMs);
  CHECK(f.meter.longestRecent().name == "retention");  // the previous bucket still counts
  f.meter.rotate();
  CHECK(f.meter.longestRecent().name == "commit");
  CHECK(f.meter.recent(LoopWorkKind::kRetention) == 0);
  f.meter.rotate();
  CHECK(f.meter.longestRecent().took == 0);
  CHECK(f.meter.longestRecent().name.empty());
  CHECK(f.meter.longest().name == "retention");
  CHECK(f.meter.max(LoopWorkKind::kRetention) == 20 * kMs);
}

TEST_CASE("the detail is made only for a run that is the longest so far") {
  Fixture f;
  int made = 0;
  auto detail = [&] {
    ++made;
    return std::string("d");
  };
  f.meter.run(
      LoopWorkKind::kCommit, [&] { f.now += 10 * kMs; }, detail);
  CHECK(made == 1);
  for (int i = 0; i < 100; ++i)
    f.meter.run(
        LoopWorkKind::kCommit, [&] { f.now += kMs; }, detail);
  CHECK(made == 1);  // shorter runs: a clock read each, no formatting
  CHECK(f.meter.recent(LoopWorkKind::kCommit) == 10 * kMs);
}

TEST_CASE("every kind has a metric label") {
  for (std::size_t i = 0; i < LoopWorkMeter::kKinds; ++i)
    CHECK(!loopWorkName(static_cast<LoopWorkKind>(i)).empty());
  CHECK(loopWorkName(LoopWorkKind::kRetention) == "retention");
}
