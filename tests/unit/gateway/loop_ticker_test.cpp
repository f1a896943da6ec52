// The loop watch's tick (gateway/pipeline_watch.h): a stall shows as a tick's lateness (issue 13),
// and the tick keeps its two timers on the grid a period apart, so that Asio re-arms its timerfd
// once per tick and other timers on the grid expire with it (issue 16).
#include <doctest/doctest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <vector>

#include "gateway/pipeline_watch.h"

using namespace gw;

namespace {

constexpr Nanos kMs = kNanosPerMilli;

/// Runs `io` until `done()` or a deadline of `limit` on the steady clock.
template <class Done>
bool runUntil(boost::asio::io_context& io, Done done, Nanos limit = 5000 * kMs) {
  const Nanos end = steadyNow() + limit;
  while (!done() && steadyNow() < end) {
    io.run_for(std::chrono::milliseconds(5));
    if (io.stopped()) io.restart();
  }
  return done();
}

}  // namespace

TEST_CASE("gridAfter: the first multiple strictly after") {
  CHECK(gridAfter(0, 10) == 10);
  CHECK(gridAfter(9, 10) == 10);
  CHECK(gridAfter(10, 10) == 20);
  CHECK(gridAfter(25, 10) == 30);
}

TEST_CASE("the loop watch reads the thread's CPU clock at every other tick, and at a late one") {
  // Issue 16: CLOCK_THREAD_CPUTIME_ID is a system call; it was read at every tick (100/s).
  int reads = 0;
  Nanos last = -1;
  for (Nanos now = 0; now < 1000 * kMs; now += kLoopGrid) {  // a second of ticks on time
    if (watchReadsCpu(now, last, 0, kLoopGrid)) {
      ++reads;
      last = now;
    }
  }
  CHECK(reads == 50);
  // Slightly late ticks (under a millisecond) change nothing; a late one reads.
  CHECK_FALSE(watchReadsCpu(1010 * kMs + 900'000, 1000 * kMs, 900'000, kLoopGrid));
  CHECK(watchReadsCpu(1010 * kMs + 1'000'000, 1000 * kMs, 1'000'000, kLoopGrid));
  CHECK(watchReadsCpu(1020 * kMs, 1000 * kMs, 0, kLoopGrid));
  CHECK(watchReadsCpu(0, -1, 0, kLoopGrid));  // no reading yet
}

TEST_CASE("the loop ticker: two timers a period apart on the grid; a stall is a tick's lateness") {
  boost::asio::io_context io;
  std::vector<Nanos> lates;
  std::vector<std::array<Nanos, 2>> dues;
  LoopTicker* self = nullptr;
  LoopTicker ticker(io, kLoopGrid, [&](Nanos late) {
    lates.push_back(late);
    dues.push_back(self->due());
  });
  self = &ticker;
  ticker.start();
  REQUIRE(runUntil(io, [&] { return lates.size() >= 5; }));
  for (const auto& d : dues) {
    CHECK(d[0] % kLoopGrid == 0);
    CHECK(d[1] % kLoopGrid == 0);
    // Both pending, a period apart: the one that fires next is already armed when the other
    // is re-armed two periods ahead (Asio's timerfd is not re-armed for it).
    CHECK(std::max(d[0], d[1]) - std::min(d[0], d[1]) == kLoopGrid);
  }

  // A handler that holds the loop for 40 ms: the tick due meanwhile runs that much later.
  const std::size_t before = lates.size();
  boost::asio::post(io, [] {
    const Nanos until = steadyNow() + 40 * kMs;
    while (steadyNow() < until) {
    }
  });
  REQUIRE(runUntil(io, [&] { return lates.size() >= before + 4; }));
  const Nanos stall = *std::max_element(lates.begin() + static_cast<long>(before), lates.end());
  CHECK(stall >= 30 * kMs);  // at least the 40 ms less one period
  CHECK(stall <= 2000 * kMs);
  // No burst to catch up: after the stall the two timers are again a period apart, in the future.
  const auto d = dues.back();
  CHECK(d[0] != d[1]);
  CHECK(std::max(d[0], d[1]) - std::min(d[0], d[1]) == kLoopGrid);

  ticker.stop();
  const std::size_t at_stop = lates.size();
  io.run_for(std::chrono::milliseconds(30));
  CHECK(lates.size() == at_stop);
}
