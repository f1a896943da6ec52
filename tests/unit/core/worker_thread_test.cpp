#include "core/worker_thread.h"

#include <doctest/doctest.h>
#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <thread>

TEST_CASE("a worker thread is named and never preempts the loop on wakeup (SCHED_BATCH)") {
  int policy_before = -1, policy_after = -1;
  bool set = false;
  char name[16] = {};
  std::thread t([&] {
    policy_before = sched_getscheduler(0);
    set = gw::becomeWorkerThread("gw-test-worker-with-a-long-name");
    policy_after = sched_getscheduler(0);
    pthread_getname_np(pthread_self(), name, sizeof name);
  });
  t.join();
  CHECK(policy_before == SCHED_OTHER);
  CHECK(set);
  CHECK(policy_after == SCHED_BATCH);
  CHECK(std::strcmp(name, "gw-test-worker-") == 0);  // 15 characters kept
  // The calling thread (here: the test's main thread) is left as it was.
  CHECK(sched_getscheduler(0) == SCHED_OTHER);
}
