// The work meter reads the loop thread's CPU clock (a system call) after a run only when the
// run was long enough for the figure to matter (issue 16: system calls per reading).
#include <doctest/doctest.h>

#include "gateway/loop_work.h"

using namespace gw;

TEST_CASE("the CPU clock is read after a run only when it took a millisecond or more") {
  Nanos now = 1'000'000'000, cpu = 0;
  int cpu_reads = 0;
  LoopWorkMeter meter{[&] { return now; },
                      [&] {
                        ++cpu_reads;
                        return cpu;
                      }};
  const auto runFor = [&](LoopWorkKind kind, Nanos took) {
    meter.run(kind, [&] {
      now += took;
      cpu += took / 2;
    });
  };
  for (int i = 0; i < 100; ++i) runFor(LoopWorkKind::kCommit, 200'000);  // 0.2 ms each
  CHECK(cpu_reads == 100);                                               // before each only
  LoopWork w = meter.takeSinceCheck();
  CHECK(w.took == 200'000);
  CHECK(w.cpu == -1);  // not measured

  runFor(LoopWorkKind::kRetention, LoopWorkMeter::kCpuAfter);  // long enough: measured
  CHECK(cpu_reads == 102);
  w = meter.takeSinceCheck();
  CHECK(w.name == "retention");
  CHECK(w.cpu == LoopWorkMeter::kCpuAfter / 2);
  CHECK(meter.longest().cpu == LoopWorkMeter::kCpuAfter / 2);
}
