// Clock-skew estimator micro-benchmark: ns per SkewEstimator::observe() in steady state, round
// robin across many estimators (one per device), and a check that the steady state does not
// allocate. Run a Release build: `clock_bench [observations] [estimators]`.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "gateway/clock_skew.h"
#include "tests/support/alloc_counter.h"

using gw::kNanosPerMilli;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::clock::SkewEstimator;

namespace {

constexpr Nanos kT0 = 1'795'256'130'000 * kNanosPerMilli;
constexpr int kDelays = 4096;  // pre-drawn delays, so the generator is not what is measured

int run(long observations, int estimators) {
  std::vector<SkewEstimator> est(estimators, SkewEstimator(gw::clock::ClockOptions{}));
  std::vector<Nanos> offset(estimators);
  std::vector<double> rate(estimators);
  std::mt19937_64 rng(1);
  for (int k = 0; k < estimators; ++k) {
    offset[k] = static_cast<Nanos>(rng() % (7200 * kNanosPerSecond)) - 3600 * kNanosPerSecond;
    rate[k] = (static_cast<double>(rng() % 401) - 200) * 1e-6;  // -200 .. +200 ppm
  }
  std::vector<Nanos> delay(kDelays);
  for (Nanos& d : delay) d = static_cast<Nanos>(rng() % (20 * kNanosPerMilli));

  // Each device sends once a second; all of them in one round.
  Nanos checksum = 0;
  long step = 0;
  auto feed = [&](long n) {
    for (long i = 0; i < n; ++i, ++step) {
      const int k = static_cast<int>(step % estimators);
      const Nanos t = kT0 + (step / estimators) * kNanosPerSecond + k * 1000;
      const Nanos device =
          t + offset[k] + static_cast<Nanos>(static_cast<double>(t - kT0) * rate[k]);
      checksum += est[k].observe(device, t + delay[step % kDelays]).event_time - t;
    }
  };
  feed(300L * estimators);  // warm up: every history full (32 segments of 8)
  const long allocations_before = gw::test::allocations();
  const auto start = std::chrono::steady_clock::now();
  feed(observations);
  const auto ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  const long allocations = gw::test::allocations() - allocations_before;

  // The loop's own cost (time, device clock model, delay lookup) without observe().
  Nanos baseline_sum = 0;
  const auto base_start = std::chrono::steady_clock::now();
  for (long i = 0; i < observations; ++i, ++step) {
    const int k = static_cast<int>(step % estimators);
    const Nanos t = kT0 + (step / estimators) * kNanosPerSecond + k * 1000;
    baseline_sum += t + offset[k] + static_cast<Nanos>(static_cast<double>(t - kT0) * rate[k]) +
                    delay[step % kDelays];
  }
  const auto base_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - base_start);

  const double observed = static_cast<double>(observations + 300L * estimators);
  std::printf(
      "%6.1f ns/observe (loop alone %.1f ns)  %ld observations, %5d estimators round robin  "
      "%ld allocations  sizeof(SkewEstimator) %zu B  (mean error %.3f ms; %lld)\n",
      ns.count() / observations, base_ns.count() / observations, observations, estimators,
      allocations, sizeof(SkewEstimator), static_cast<double>(checksum) / observed / kNanosPerMilli,
      static_cast<long long>(baseline_sum % 10));
  return allocations == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const long observations = argc > 1 ? std::atol(argv[1]) : 10'000'000;
  const int estimators = argc > 2 ? std::atoi(argv[2]) : 1000;
  int rc = 0;
  rc |= run(observations, 1);
  rc |= run(observations, estimators);
  rc |= run(observations, estimators * 10);
  return rc;
}
