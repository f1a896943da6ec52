// The work meter reads the loop thread's CPU clock (a system call) after a run only when the
// run was long enough for the figure to matter, and before a run only when its last reading (the
// loop watch's, every other 10 ms tick) is older than kCpuAnchorAge (issue 16: system calls per
// reading).
#include <doctest/doctest.h>

#include "gateway/loop_work.h"

using namespace gw;

namespace {

struct Fixture {
  Nanos now = 1'000'000'000, cpu = 0;
  int cpu_reads = 0;
  LoopWorkMeter meter{[this] { return now; },
                      [this] {
                        ++cpu_reads;
                        return cpu;
                      }};
  /// A run of `took`, `on_cpu` of it on the loop thread's CPU.
  void runFor(LoopWorkKind kind, Nanos took, Nanos on_cpu) {
    meter.run(kind, [&] {
      now += took;
      cpu += on_cpu;
    });
  }
  /// Time between runs: the loop waits in epoll (no CPU), or works unnamed (`on_cpu`).
  void idle(Nanos took, Nanos on_cpu = 0) {
    now += took;
    cpu += on_cpu;
  }
};

}  // namespace

TEST_CASE("short runs read the CPU clock only to renew an old reading, not before each run") {
  Fixture f;
  // 200 runs of 0.2 ms, 0.1 ms apart, no watch tick in between: 60 ms in all.
  for (int i = 0; i < 200; ++i) {
    f.runFor(LoopWorkKind::kSinks, 200'000, 100'000);
    f.idle(100'000);
  }
  CHECK(f.cpu_reads == 2);  // at the first run, and once the 30 ms old reading was renewed
  LoopWork w = f.meter.takeSinceCheck();
  CHECK(w.took == 200'000);
  CHECK(w.cpu == -1);  // not measured

  // The loop watch's ticks read the clock every other 10 ms tick: then runs read none before them.
  f.cpu_reads = 0;
  for (int tick = 0; tick < 10; ++tick) {
    if (tick % 2 == 0) f.meter.cpuNow();
    for (int i = 0; i < 10; ++i) {
      f.runFor(LoopWorkKind::kDurable, 200'000, 100'000);
      f.idle(800'000);
    }
  }
  CHECK(f.cpu_reads == 5);  // the ticks' only: 100 runs read nothing
}

TEST_CASE("a long run's CPU time is measured from the last reading, at most its wall time") {
  Fixture f;
  f.meter.cpuNow();  // a watch tick
  const int reads = f.cpu_reads;
  f.idle(kNanosPerMilli);  // waiting in epoll: no CPU
  f.runFor(LoopWorkKind::kRetention, 4 * kNanosPerMilli, kNanosPerMilli);  // 3 ms waiting for CPU
  CHECK(f.cpu_reads == reads + 1);                                         // after it only
  LoopWork w = f.meter.takeSinceCheck();
  CHECK(w.name == "retention");
  CHECK(w.took == 4 * kNanosPerMilli);
  CHECK(w.cpu == kNanosPerMilli);
  CHECK(f.meter.longest().cpu == kNanosPerMilli);

  // Unnamed work between the reading and the run counts in (at most the run's wall time).
  f.meter.cpuNow();
  f.idle(2 * kNanosPerMilli, 2 * kNanosPerMilli);
  f.runFor(LoopWorkKind::kCommit, 3 * kNanosPerMilli, kNanosPerMilli);
  w = f.meter.takeSinceCheck();
  CHECK(w.name == "commit");
  CHECK(w.cpu == 3 * kNanosPerMilli);  // 1 ms of its own + 2 ms before it, capped at 3 ms

  // A reading older than kCpuAnchorAge is renewed before the run: the figure is the run's own.
  f.meter.cpuNow();
  f.idle(LoopWorkMeter::kCpuAnchorAge + 1, LoopWorkMeter::kCpuAnchorAge / 2);
  const int before = f.cpu_reads;
  f.runFor(LoopWorkKind::kCommit, 3 * kNanosPerMilli, kNanosPerMilli);
  CHECK(f.cpu_reads == before + 2);
  w = f.meter.takeSinceCheck();
  CHECK(w.cpu == kNanosPerMilli);
}
