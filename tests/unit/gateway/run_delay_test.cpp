#include "gateway/run_delay.h"

#include <doctest/doctest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <thread>

#include "core/steady.h"

TEST_CASE("a schedstat line's run-queue wait is its second figure") {
  CHECK(gw::parseRunDelay("7916203 1613421 5\n") == 1613421);
  CHECK(gw::parseRunDelay("0 0 0") == 0);
  CHECK(gw::parseRunDelay("12 345") == 345);
  CHECK(gw::parseRunDelay("") == -1);
  CHECK(gw::parseRunDelay("12") == -1);
  CHECK(gw::parseRunDelay("x 12 3") == -1);
  CHECK(gw::parseRunDelay("12 -3 4") == -1);
}

namespace {

// Spins on the calling thread for `ns` of steady time.
void spin(gw::Nanos ns) {
  const gw::Nanos end = gw::steadyNow() + ns;
  while (gw::steadyNow() < end) {
  }
}

bool pinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

}  // namespace

TEST_CASE("a thread that shares its CPU with a busy one waits for it in the run queue") {
  gw::RunDelayClock clock;
  const gw::Nanos before = clock.read();
  if (before < 0) {
    MESSAGE("no /proc/<pid>/task/<tid>/schedstat here (CONFIG_SCHED_INFO): nothing to check");
    return;
  }
  cpu_set_t allowed;
  REQUIRE(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &allowed)) ++cpu;
  cpu_set_t saved = allowed;
  REQUIRE(pinToCpu(cpu));
  // Both spin on one CPU for 300 ms: this thread waits for the other about half of the time.
  std::atomic<bool> go{false};
  std::thread rival([&] {
    pinToCpu(cpu);
    go = true;
    spin(300 * gw::kNanosPerMilli);
  });
  while (!go) {
  }
  const gw::Nanos start = clock.read();
  spin(300 * gw::kNanosPerMilli);
  const gw::Nanos waited = clock.read() - start;
  rival.join();
  pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  CHECK(start >= before);
  // At least 50 ms of the 300 (half on an idle machine; a tick is 1-10 ms).
  CHECK(waited >= 50 * gw::kNanosPerMilli);
  // The same clock goes on: a second object on another thread reads that thread's figure.
  gw::Nanos other = -1;
  std::thread([&] {
    gw::RunDelayClock c;
    other = c.read();
  }).join();
  CHECK(other >= 0);
  CHECK(other < waited);
}
