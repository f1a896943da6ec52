// A mergeable quantile sketch with a relative-error bound (design: "Windows"), used by the window
// engine once a window holds more samples than its exact-quantile cap.
//
// DDSketch (Masson, Rim, Lee: "DDSketch: A Fast and Fully-Mergeable Quantile Sketch with
// Relative-Error Guarantees", VLDB 2019), written here because Debian packages no C or C++
// implementation (searched: ddsketch, quantile, tdigest, datasketches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gw::aggregators {

/// Log-bucketed quantile sketch. With relative accuracy α, γ = (1+α)/(1−α) and a value x > 0
/// goes to bucket i = ⌈log_γ x⌉, which covers (γ^(i−1), γ^i] and answers 2γ^i/(γ+1): every
/// value in the bucket is within a relative error α of that answer. Negative values use a
/// second store keyed by |x|; values with |x| below the smallest normal double count as zero
/// and answer 0.
///
/// Rank: quantile(q) answers for the item of nearest rank r = ⌈q·n⌉ (the r-th smallest, r ≥ 1),
/// the same definition the exact path uses, so |answer − exact| ≤ α·|exact| as long as no bucket
/// was collapsed.
///
/// Memory: each store is a dense array over the bucket indices in use, at most `max_buckets`
/// long. A value that would widen a store past that folds the lowest buckets (the smallest
/// magnitudes) into one; collapsed() then says so, and the bound no longer holds for ranks that
/// fall into the folded bucket (those near zero; high quantiles keep it). At α = 1%, 1,024
/// buckets cover a ratio of 8.8 decades between the smallest and the largest magnitude.
///
/// Threading: not thread-safe. add() does not allocate once the stores have grown to the range
/// in use; clear() keeps their capacity.
class QuantileSketch {
 public:
  /// `alpha` in (0, 1); `max_buckets` ≥ 2 per store (positive and negative).
  QuantileSketch(double alpha, std::uint32_t max_buckets);

  /// Adds one finite value (a non-finite one is a bug and aborts in debug builds).
  void add(double value) { add(value, 1); }
  /// Adds `n` occurrences of a finite value.
  void add(double value, std::uint64_t n);
  /// Adds every item of `other`, which must have the same alpha (aborts otherwise: a bug). The
  /// result is what adding the same values to this sketch would have given (up to collapsing).
  void merge(const QuantileSketch& other);
  /// Forgets every item; keeps the allocated capacity for reuse.
  void clear();

  /// Items added.
  std::uint64_t count() const { return neg_.total + zero_ + pos_.total; }
  /// The value of nearest rank `rank` (1 ≤ rank ≤ count(), the rank-th smallest), within the
  /// relative bound. Aborts on an empty sketch or a rank out of range (a bug).
  double valueAtRank(std::uint64_t rank) const;
  /// The q-quantile by nearest rank, r = max(1, ⌈q·n⌉), for q in [0, 1].
  double quantile(double q) const;

  double alpha() const { return alpha_; }
  /// True once a store had to fold its lowest buckets (see the class comment).
  bool collapsed() const { return neg_.collapsed || pos_.collapsed; }
  /// Buckets in use (the span of both stores), for tests and memory figures.
  std::size_t buckets() const { return neg_.counts.size() + pos_.counts.size(); }
  /// Heap bytes held (capacity, not size), excluding sizeof(QuantileSketch).
  std::size_t heapBytes() const {
    return (neg_.counts.capacity() + pos_.counts.capacity()) * sizeof(std::uint64_t);
  }

 private:
  /// Counts of the bucket indices [min_index, min_index + counts.size()).
  struct Store {
    std::vector<std::uint64_t> counts;
    std::int32_t min_index = 0;
    std::uint64_t total = 0;
    bool collapsed = false;
  };
  void addToStore(Store& s, std::int32_t index, std::uint64_t n);
  std::int32_t indexOf(double magnitude) const;
  double valueOf(std::int32_t index) const;

  double alpha_;
  double gamma_;
  double inv_log_gamma_;
  std::uint32_t max_buckets_;
  Store neg_, pos_;
  std::uint64_t zero_ = 0;
};

}  // namespace gw::aggregators
