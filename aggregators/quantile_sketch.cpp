#include "aggregators/quantile_sketch.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace gw::aggregators {
namespace {

// A broken invariant is a bug: crash loudly, in release builds too (conventions: "Errors").
void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

QuantileSketch::QuantileSketch(double alpha, std::uint32_t max_buckets)
    : alpha_(alpha),
      gamma_((1 + alpha) / (1 - alpha)),
      inv_log_gamma_(1 / std::log((1 + alpha) / (1 - alpha))),
      max_buckets_(max_buckets) {
  require(alpha > 0 && alpha < 1 && max_buckets >= 2);
}

std::int32_t QuantileSketch::indexOf(double magnitude) const {
  return static_cast<std::int32_t>(std::ceil(std::log(magnitude) * inv_log_gamma_));
}

double QuantileSketch::valueOf(std::int32_t index) const {
  // 2γ^i/(γ+1), in log space so that the largest doubles do not overflow on the way.
  return std::min(std::exp(index / inv_log_gamma_ + std::log(2 / (gamma_ + 1))),
                  std::numeric_limits<double>::max());
}

void QuantileSketch::add(double value, std::uint64_t n) {
  assert(std::isfinite(value));
  if (n == 0) return;
  const double magnitude = std::fabs(value);
  if (!(magnitude >= std::numeric_limits<double>::min())) {
    zero_ += n;
  } else if (value > 0) {
    addToStore(pos_, indexOf(magnitude), n);
  } else {
    addToStore(neg_, indexOf(magnitude), n);
  }
}

/// Grows capacity geometrically but never past max_buckets, so the memory bound is the
/// documented one, not twice it.
static void reserveFor(std::vector<std::uint64_t>& c, size_t needed, size_t max_buckets) {
  if (needed <= c.capacity()) return;
  c.reserve(std::min(std::max(needed, 2 * c.capacity()), std::max(needed, max_buckets)));
}

void QuantileSketch::addToStore(Store& s, std::int32_t index, std::uint64_t n) {
  s.total += n;
  auto& c = s.counts;
  if (c.empty()) {
    s.min_index = index;
    c.push_back(n);
    return;
  }
  const std::int64_t lo = s.min_index;
  const std::int64_t hi = lo + static_cast<std::int64_t>(c.size()) - 1;
  const std::int64_t limit = max_buckets_;
  if (index >= lo && index <= hi) {
    c[index - lo] += n;
    return;
  }
  if (index < lo) {
    std::int64_t i = index;
    if (hi - i + 1 > limit) {  // too wide: the value joins the lowest bucket allowed
      i = hi - limit + 1;
      s.collapsed = true;
    }
    if (i < lo) {
      reserveFor(c, c.size() + static_cast<size_t>(lo - i), max_buckets_);
      c.insert(c.begin(), static_cast<size_t>(lo - i), 0);
      s.min_index = static_cast<std::int32_t>(i);
    }
    c[i - s.min_index] += n;
    return;
  }
  // index > hi: keep the highest buckets, fold the lowest ones into the new lowest.
  if (static_cast<std::int64_t>(index) - lo + 1 > limit) {
    const std::int64_t new_lo = static_cast<std::int64_t>(index) - limit + 1;
    const std::int64_t drop =
        std::min<std::int64_t>(new_lo - lo, static_cast<std::int64_t>(c.size()));
    std::uint64_t folded = 0;
    for (std::int64_t j = 0; j < drop; ++j) folded += c[j];
    c.erase(c.begin(), c.begin() + drop);
    if (c.empty()) c.push_back(0);
    s.min_index = static_cast<std::int32_t>(new_lo);
    c[0] += folded;
    s.collapsed = true;
  }
  const auto size = static_cast<size_t>(std::int64_t{index} - s.min_index + 1);
  reserveFor(c, size, max_buckets_);
  c.resize(size, 0);
  c.back() += n;
}

void QuantileSketch::merge(const QuantileSketch& other) {
  require(other.alpha_ == alpha_);
  zero_ += other.zero_;
  // Highest indices first, so folding (which keeps the highest) loses as little as possible.
  auto mergeStore = [this](Store& into, const Store& from) {
    for (size_t j = from.counts.size(); j-- > 0;)
      if (from.counts[j] != 0)
        addToStore(into, from.min_index + static_cast<std::int32_t>(j), from.counts[j]);
    into.collapsed = into.collapsed || from.collapsed;
  };
  mergeStore(neg_, other.neg_);
  mergeStore(pos_, other.pos_);
}

void QuantileSketch::clear() {
  for (Store* s : {&neg_, &pos_}) {
    s->counts.clear();
    s->total = 0;
    s->collapsed = false;
  }
  zero_ = 0;
}

double QuantileSketch::valueAtRank(std::uint64_t rank) const {
  require(rank >= 1 && rank <= count());
  // Order: negatives from the largest magnitude down, zeros, positives from the smallest up.
  if (rank <= neg_.total) {
    std::uint64_t seen = 0;
    for (size_t j = neg_.counts.size(); j-- > 0;) {
      seen += neg_.counts[j];
      if (seen >= rank) return -valueOf(neg_.min_index + static_cast<std::int32_t>(j));
    }
  }
  rank -= neg_.total;
  if (rank <= zero_) return 0;
  rank -= zero_;
  std::uint64_t seen = 0;
  for (size_t j = 0; j < pos_.counts.size(); ++j) {
    seen += pos_.counts[j];
    if (seen >= rank) return valueOf(pos_.min_index + static_cast<std::int32_t>(j));
  }
  require(false);  // the totals and the counts disagree
  return 0;
}

double QuantileSketch::quantile(double q) const {
  require(q >= 0 && q <= 1);
  const std::uint64_t n = count();
  auto r = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(n)));
  return valueAtRank(std::clamp<std::uint64_t>(r, 1, n));
}

}  // namespace gw::aggregators
