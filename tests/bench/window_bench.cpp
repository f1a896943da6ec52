// Window engine micro-benchmark (issue 4): ns per reading added, window-close latency after
// boundary + lateness, the CPU cost of closing many windows at once, bytes per active series,
// and 10,000 series at 1 kHz in total. Simulated time only: event times and the wall clock are
// driven by the loop. Run a Release build: `window_bench [readings]`.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "aggregators/aggregator.h"
#include "tests/support/alloc_counter.h"

using namespace gw;
using namespace gw::aggregators;

namespace {

constexpr Nanos kS = kNanosPerSecond;
constexpr Nanos kT0 = 1'795'256'130'000 * kNanosPerMilli;

double nowNs() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

size_t heapInUse() { return mallinfo2().uordblks; }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto r = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(r, 1, v.size()) - 1];
}

/// Steady-state cost of add(): `series` series round robin, one reading each per `period` of
/// event time, slightly out of order; wall clock every 100 ms of simulated time.
void addCost(const char* label, const WindowOptions& o, int series, Nanos period, long readings) {
  long emitted = 0;
  auto agg = Aggregator::create(o, [&](const Aggregate&) { ++emitted; });
  std::mt19937_64 rng(1);
  std::vector<double> values(4096);
  std::vector<Nanos> jitter(4096);
  for (auto& v : values) v = static_cast<double>(rng() % 10000) / 100 - 20;
  for (auto& j : jitter) j = static_cast<Nanos>(rng() % (500 * kNanosPerMilli));
  const Nanos step = period / series;  // event time between consecutive readings
  long i = 0;
  Nanos next_tick = kT0;
  auto feed = [&](long n) {
    for (long k = 0; k < n; ++k, ++i) {
      const Nanos t = kT0 + i * step;
      if (t >= next_tick) {
        agg->advanceWallTime(t);
        next_tick += 100 * kNanosPerMilli;
      }
      agg->add(static_cast<SeriesId>(i % series), t - jitter[i & 4095], values[i & 4095],
               static_cast<std::uint64_t>(i + 1));
    }
  };
  // Warm up for three of the largest windows so every buffer has its steady-state size.
  const Nanos largest = *std::max_element(o.sizes.begin(), o.sizes.end());
  feed(static_cast<long>(3 * largest / step) + 1);
  const long allocs_before = gw::test::allocations();
  const double t0 = nowNs();
  feed(readings);
  const double elapsed = nowNs() - t0;
  const long allocs = gw::test::allocations() - allocs_before;
  std::printf("%-44s %7.1f ns/reading  (%ld readings, %ld windows closed, %ld allocations)\n",
              label, elapsed / static_cast<double>(readings), readings, emitted, allocs);
}

/// Close latency with per-reading calls, in simulated time: for each aggregate, the event time
/// (or wall time) at which it was emitted minus (window end + lateness). Also the real time
/// the engine took from the call that moved the watermark past the boundary to each emission.
/// The input stops at the end, so the last windows close on the wall clock (every `tick`).
void closeLatency(int series, Nanos period, Nanos tick, long readings) {
  WindowOptions o;
  Nanos sim_now = 0;
  double call_started = 0;
  std::vector<double> sim_latency, real_latency;
  sim_latency.reserve(static_cast<size_t>(readings) + series);  // no growth inside the timing
  real_latency.reserve(static_cast<size_t>(readings) + series);
  auto agg = Aggregator::create(o, [&](const Aggregate& a) {
    sim_latency.push_back(static_cast<double>(sim_now - (a.end() + o.allowed_lateness)));
    real_latency.push_back(nowNs() - call_started);
  });
  // Poisson arrivals (exponential gaps), so a boundary is crossed by a reading a random time
  // after it, as with real sensors.
  std::mt19937_64 rng(3);
  std::exponential_distribution<double> gap(static_cast<double>(series) /
                                            static_cast<double>(period));
  Nanos next_tick = kT0;
  Nanos t = kT0;
  for (long i = 0; i < readings; ++i) {
    t += static_cast<Nanos>(gap(rng));
    if (t >= next_tick) {
      sim_now = t;
      call_started = nowNs();
      agg->advanceWallTime(t);
      next_tick += tick;
    }
    sim_now = t;
    call_started = nowNs();
    agg->add(static_cast<SeriesId>(i % series), t, static_cast<double>(i % 101),
             static_cast<std::uint64_t>(i + 1));
  }
  // Then every series falls silent: the last windows close on the wall clock's ticks.
  while (agg->openWindows() > 0) {
    sim_now = next_tick;
    call_started = nowNs();
    agg->advanceWallTime(next_tick);
    next_tick += tick;
  }
  std::printf(
      "close latency, %d series at %.0f Hz total, wall tick %.0f ms: %zu windows; simulated "
      "p50 %.3f ms, p99 %.3f ms, max %.3f ms; engine p99 %.1f us, max %.1f us\n",
      series, static_cast<double>(series) * kS / static_cast<double>(period),
      static_cast<double>(tick) / kNanosPerMilli, sim_latency.size(),
      percentile(sim_latency, 0.5) / kNanosPerMilli, percentile(sim_latency, 0.99) / kNanosPerMilli,
      percentile(sim_latency, 1.0) / kNanosPerMilli, percentile(real_latency, 0.99) / 1e3,
      percentile(real_latency, 1.0) / 1e3);
}

/// CPU cost of one watermark step that closes `series` windows at once (every series has one
/// open window with `per_window` readings).
void closeBurst(int series, int per_window, int rounds) {
  WindowOptions o;
  o.stats = kAllStats;
  long emitted = 0;
  auto agg = Aggregator::create(o, [&](const Aggregate&) { ++emitted; });
  std::vector<double> per_round;
  for (int r = 0; r < rounds; ++r) {
    const Nanos start = kT0 + r * 10 * kS;
    for (int k = 0; k < per_window; ++k)
      for (int s = 0; s < series; ++s)
        agg->add(static_cast<SeriesId>(s), start + k * (9 * kS / per_window), (s * 7 + k) % 1000);
    const long before = emitted;
    const double t0 = nowNs();
    agg->advanceWallTime(start + 12 * kS);
    per_round.push_back(nowNs() - t0);
    if (emitted - before != series) std::abort();
  }
  const double p50 = percentile(per_round, 0.5);
  std::printf(
      "closing %d windows of %d readings at once (all stats): %.2f ms per step (p50 of %d), "
      "%.0f ns per window\n",
      series, per_window, p50 / 1e6, rounds, p50 / series);
}

/// Bytes per active series, by the engine's own accounting and by mallinfo2().
void bytesPerSeries(const char* label, int series, int per_window, int windows) {
  WindowOptions o;
  const size_t heap_before = heapInUse();
  auto agg = Aggregator::create(o, nullptr);
  size_t peak = 0, heap_peak = 0;
  for (int w = 0; w < windows; ++w) {
    const Nanos start = kT0 + w * 10 * kS;
    for (int k = 0; k < per_window; ++k)
      for (int s = 0; s < series; ++s)
        agg->add(static_cast<SeriesId>(s), start + k * (10 * kS / per_window),
                 std::sin(k * 0.01 + s) * 100);
    peak = std::max(peak, agg->memoryBytes());
    heap_peak = std::max(heap_peak, heapInUse() - heap_before);
  }
  std::printf("bytes per active series, %-34s %6zu (engine accounting), %6zu (mallinfo2 heap)\n",
              label, peak / series, heap_peak / series);
}

/// 10,000 series at 1,000 readings/s in total, for `minutes` simulated minutes.
void tenThousandSeries(int minutes) {
  WindowOptions o;
  o.sizes = {10 * kS, 60 * kS};
  long emitted = 0;
  const size_t heap_before = heapInUse();
  auto agg = Aggregator::create(o, [&](const Aggregate&) { ++emitted; });
  constexpr int kSeries = 10000;
  size_t peak = 0, heap_peak = 0;
  const long readings = minutes * 60L * 1000;
  const double t0 = nowNs();
  for (long i = 0; i < readings; ++i) {
    const Nanos t = kT0 + i * kNanosPerMilli;
    agg->add(static_cast<SeriesId>(i % kSeries), t, static_cast<double>(i % 97), i + 1);
    if (i % 100 == 0) agg->advanceWallTime(t);
    if (i % 5000 == 0) {
      peak = std::max(peak, agg->memoryBytes());
      heap_peak = std::max(heap_peak, heapInUse() - heap_before);
    }
  }
  const double elapsed = nowNs() - t0;
  std::printf(
      "10,000 series at 1 kHz total, 10 s + 1 min windows, %d simulated min: peak %.2f MB "
      "(engine), %.2f MB (mallinfo2); %ld aggregates; %.1f ns/reading incl. closing\n",
      minutes, static_cast<double>(peak) / 1e6, static_cast<double>(heap_peak) / 1e6, emitted,
      elapsed / static_cast<double>(readings));
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 20'000'000;
  WindowOptions base;
  WindowOptions two = base;
  two.sizes = {10 * kS, 60 * kS};
  WindowOptions all = base;
  all.stats = kAllStats;

  addCost("add, 10k series, 0.1 Hz each (1 per window)", base, 10000, 10 * kS, n / 4);
  addCost("add, 1k series, 10 Hz each", base, 1000, 100 * kNanosPerMilli, n);
  addCost("add, 1k series, 10 Hz, 10 s + 1 min", two, 1000, 100 * kNanosPerMilli, n);
  addCost("add, 1k series, 10 Hz, all stats", all, 1000, 100 * kNanosPerMilli, n);
  addCost("add, 100 series, 1 kHz each (past the cap)", base, 100, kNanosPerMilli, n);
  std::printf("\n");
  closeLatency(10000, 10 * kS, 100 * kNanosPerMilli, 2'000'000);
  closeLatency(100, kNanosPerMilli, 100 * kNanosPerMilli, 10'000'000);
  closeBurst(10000, 1, 20);
  closeBurst(10000, 20, 10);
  closeBurst(100, 10000, 5);
  std::printf("\n");
  bytesPerSeries("1 reading per window:", 10000, 1, 6);
  bytesPerSeries("100 per window (10 Hz):", 1000, 100, 6);
  bytesPerSeries("10,000 per window (1 kHz, > cap):", 100, 10000, 6);
  tenThousandSeries(5);
  return 0;
}
