#include "aggregators/quantile_sketch.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using gw::aggregators::QuantileSketch;

namespace {

/// The nearest-rank value: the ⌈p·n/100⌉-th smallest.
double exactRank(std::vector<double> v, std::uint64_t rank) {
  std::sort(v.begin(), v.end());
  return v[rank - 1];
}

bool withinBound(double estimate, double exact, double alpha) {
  return std::fabs(estimate - exact) <= alpha * std::fabs(exact) * (1 + 1e-9);
}

}  // namespace

TEST_CASE("sketch: every rank within the relative bound, negative values and zero included") {
  for (double alpha : {0.01, 0.001, 0.05}) {
    std::mt19937_64 rng(7);
    std::lognormal_distribution<double> lognormal(0, 3);
    std::vector<double> values;
    QuantileSketch sketch(alpha, 1 << 16);
    for (int i = 0; i < 20000; ++i) {
      double v = lognormal(rng);
      const auto kind = rng() % 10;
      if (kind < 3) v = -v;
      if (kind == 3) v = 0;
      if (kind == 4) v = 1e-320;  // subnormal: counted as zero
      values.push_back(v);
      sketch.add(v);
    }
    CHECK_FALSE(sketch.collapsed());
    CHECK(sketch.count() == values.size());
    std::vector<double> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    for (std::uint64_t r = 1; r <= sorted.size(); r += 37) {
      const double exact = sorted[r - 1];
      const double est = sketch.valueAtRank(r);
      if (exact == 1e-320) {
        CHECK(est == 0);
      } else {
        CHECK_MESSAGE(withinBound(est, exact, alpha), "alpha ", alpha, " rank ", r, " exact ",
                      exact, " estimate ", est);
      }
    }
    CHECK(sketch.quantile(0) == sketch.valueAtRank(1));
    CHECK(sketch.quantile(1) == sketch.valueAtRank(sketch.count()));
  }
}

TEST_CASE("sketch: a single value and repeated values") {
  QuantileSketch s(0.01, 64);
  s.add(-42.5);
  CHECK(withinBound(s.quantile(0.95), -42.5, 0.01));
  CHECK(withinBound(s.quantile(0.0), -42.5, 0.01));
  s.clear();
  CHECK(s.count() == 0);
  s.add(3.0, 1000);
  CHECK(s.count() == 1000);
  CHECK(s.buckets() == 1);
  CHECK(withinBound(s.valueAtRank(500), 3.0, 0.01));
  s.add(0.0, 10);
  CHECK(s.valueAtRank(10) == 0);
  CHECK(withinBound(s.valueAtRank(11), 3.0, 0.01));
}

TEST_CASE("sketch: merge gives what adding everything to one sketch gives") {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(5, 20);
  QuantileSketch a(0.01, 2048), b(0.01, 2048), all(0.01, 2048);
  for (int i = 0; i < 5000; ++i) {
    const double v = normal(rng);
    (i % 3 ? a : b).add(v);
    all.add(v);
  }
  a.merge(b);
  CHECK(a.count() == all.count());
  for (std::uint64_t r = 1; r <= all.count(); r += 17)
    CHECK(a.valueAtRank(r) == all.valueAtRank(r));
}

TEST_CASE("sketch: the bucket count is bounded; folding keeps the high quantiles") {
  QuantileSketch s(0.01, 100);
  std::vector<double> values;
  // 1e-6 .. 1e6: 12 decades, ~1,400 buckets at 1%; only 100 kept, the smallest magnitudes folded.
  for (int i = 0; i <= 12000; ++i) {
    const double v = std::pow(10.0, -6 + i / 1000.0);
    values.push_back(v);
    s.add(v);
  }
  CHECK(s.collapsed());
  CHECK(s.buckets() <= 100);
  CHECK(s.heapBytes() <= 100 * sizeof(std::uint64_t));
  for (double q : {0.95, 0.99, 1.0}) {
    const auto r = static_cast<std::uint64_t>(std::ceil(q * values.size()));
    CHECK(withinBound(s.valueAtRank(r), exactRank(values, r), 0.01));
  }
  // Values arriving from the top down fold the same way.
  QuantileSketch d(0.01, 100);
  for (auto it = values.rbegin(); it != values.rend(); ++it) d.add(*it);
  CHECK(d.buckets() <= 100);
  const auto r99 = static_cast<std::uint64_t>(std::ceil(0.99 * values.size()));
  CHECK(withinBound(d.valueAtRank(r99), exactRank(values, r99), 0.01));
  // Negative values fold their smallest magnitudes too: the lowest quantiles keep the bound.
  QuantileSketch n(0.01, 100);
  for (double v : values) n.add(-v);
  CHECK(withinBound(n.valueAtRank(1), -1e6, 0.01));
  CHECK(n.buckets() <= 100);
}

TEST_CASE("sketch: extreme magnitudes do not overflow") {
  QuantileSketch s(0.01, 1 << 17);
  s.add(1.7e308);
  s.add(-1.7e308);
  s.add(2.3e-308);
  CHECK(withinBound(s.valueAtRank(3), 1.7e308, 0.01));
  CHECK(std::isfinite(s.valueAtRank(3)));
  CHECK(withinBound(s.valueAtRank(1), -1.7e308, 0.01));
  CHECK(withinBound(s.valueAtRank(2), 2.3e-308, 0.01));
}
