// The window engine behind aggregators/aggregator.h.
//
// Layout: series ids are dense, so every (series, size) pair has a slot at a fixed index, and
// each slot a ring of M = ⌈lateness/size⌉ + 1 window states indexed by (window number mod M).
// That ring is enough: every reading has event time ≤ the highest seen (H), and every open
// window ends after the watermark (≥ H − lateness), so the open windows of one size are among M
// consecutive window numbers — for all series at once. The same holds for the "due" ring per
// size, which lists the series with an open window ending at each of those M ends, so closing
// never scans idle series.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <limits>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "aggregators/aggregator.h"
#include "aggregators/quantile_sketch.h"

namespace gw::aggregators {
namespace {

constexpr Nanos kNone = std::numeric_limits<Nanos>::min();
constexpr Nanos kMaxNanos = std::numeric_limits<Nanos>::max();
// Series ids index arrays; a larger one is not from Journal::internSeries (a bug).
constexpr SeriesId kMaxSeries = 1u << 26;  // radixSort() relies on < 2^27
/// Samples room taken at once when a window keeps its first samples (see addTo).
constexpr std::size_t kFirstSamples = 8;

void require(bool ok) {
  if (!ok) std::abort();
}

Nanos floorDiv(Nanos a, Nanos b) {
  Nanos q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

std::uint32_t ringIndex(Nanos window_number, std::uint32_t m) {
  const Nanos r = window_number % static_cast<Nanos>(m);
  return static_cast<std::uint32_t>(r < 0 ? r + m : r);
}

Nanos saturatingSub(Nanos a, Nanos b) {  // b ≥ 0
  return a < kNone + b ? kNone : a - b;
}

/// ⌈percent·n/100⌉ clamped to [1, n]: the nearest rank, in integers so that 95% of 20 is 19.
std::uint64_t nearestRank(std::uint32_t percent, std::uint64_t n) {
  // n = 100a + b: ⌈(100a + b)·p/100⌉ = a·p + ⌈b·p/100⌉, without overflow (and no __int128 on
  // 32-bit targets).
  const std::uint64_t r = n / 100 * percent + (n % 100 * percent + 99) / 100;
  return std::clamp<std::uint64_t>(r, 1, n);
}

/// A window's exact samples: a vector's operations this file uses, in 16 bytes instead of 24
/// (32-bit size and capacity: at most sample_cap values; issue 13: bytes per open window).
class SampleBuffer {
 public:
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  double* begin() { return data_.get(); }
  double* end() { return data_.get() + size_; }
  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    require(n <= std::numeric_limits<std::uint32_t>::max());
    auto grown = std::make_unique<double[]>(n);
    std::copy_n(data_.get(), size_, grown.get());
    data_ = std::move(grown);
    capacity_ = static_cast<std::uint32_t>(n);
  }
  /// Adds `v`; grows by a quarter (8, 10, 12, 15, 18, 22, 27, ...), never past `limit` (the
  /// sample cap), not by doubling: a sensor at 1/s fills a 10 s window with 10-11 samples, 12
  /// slots of room instead of 16 (pooled buffers keep their room; issue 16: RSS at 10,000
  /// devices × 1/s), and one at 2/s 20-22 in 22 instead of 27 by half (issue 13: VmHWM at
  /// 10,000 series). Still geometric: O(1) copies per sample.
  void push_back(double v, std::size_t limit) {
    if (size_ == capacity_)
      reserve(std::max<std::size_t>(
          size_ + 1, std::min(limit, capacity_ + std::max<std::size_t>(capacity_ / 4, 2))));
    data_[size_++] = v;
  }
  void clear() { size_ = 0; }
  /// Frees the buffer (clear() keeps it for the next window).
  void release() {
    data_.reset();
    size_ = capacity_ = 0;
  }

 private:
  std::unique_ptr<double[]> data_;
  std::uint32_t size_ = 0, capacity_ = 0;
};

struct Window {
  Nanos start = kNone;  ///< kNone: not open
  std::uint64_t count = 0;
  double min = 0, max = 0;
  double sum = 0, compensation = 0;  ///< Neumaier summation
  /// While 3 ≤ count ≤ sample_cap: every value. With one or two values they are {min, max}, so
  /// a series with a reading or two per window allocates nothing (issue 13: memory per series).
  SampleBuffer samples;
  std::unique_ptr<QuantileSketch> sketch;  ///< past the cap; kept for the next window
  std::uint32_t ref_at = 0;                ///< where window_refs_ points to it (ensureSeries)
};

/// Heap bytes a window state holds beyond its own size: its sample room and its sketch.
std::size_t bufferBytes(const Window& w) {
  return w.samples.capacity() * sizeof(double) +
         (w.sketch ? sizeof(QuantileSketch) + w.sketch->heapBytes() : 0);
}

/// What only stddev, first and last need: kept beside a window (same pool index) only when the
/// config asks for one of them, so the default statistics cost 56 bytes less per open window.
struct Extras {
  double shift = 0, shifted_sum = 0, shifted_squares = 0;  ///< for stddev, around the first value
  Nanos first_time = 0, last_time = 0;
  double first = 0, last = 0;
};

/// No window at this ring position (Window states are pooled: only open ones exist).
constexpr std::uint32_t kNoWindow = std::numeric_limits<std::uint32_t>::max();

/// 8 bytes per (series, size) (issue 13: 24 with the restored end inline, which only a restart
/// sets: it lives in restored_ends_, allocated by the first restoreClosed()).
struct Slot {
  /// Late readings for the next aggregate; saturates (4·10^9 late readings between two
  /// aggregates of one series; stats().late stays exact).
  std::uint32_t late_pending = 0;
  std::uint32_t last_ring = 0;  ///< ring position of the last window touched (fast path)
};

struct Due {
  Nanos end = kNone;  ///< kNone: no open window of this size ends here
  std::uint64_t first_seq = 0;
  std::vector<SeriesId> series;
  bool sorted = true;  ///< `series` ascending (kept per push: no scan at the hand-over)
};

/// A due list handed over for closing (closeDue): issue 13, the windows of 100,000 silent
/// series ending together are handed over by moving the list (O(1)), not copied entry by entry
/// into a queue (a 2.4 MB burst of 24-byte entries that held the loop ~9 ms in one step).
struct PendingGroup {
  Nanos end = 0;
  std::uint32_t k = 0;
  std::uint64_t first_seq = 0;   ///< for replayFrom() while some of its windows wait
  std::vector<SeriesId> series;  ///< ascending
  std::size_t next = 0;          ///< series[next] is the next window of this group to close
  bool done() const { return next == series.size(); }
};

/// Sorts series ids (< 2^27) in O(n): 3 passes of 9 bits. A due list comes unsorted when
/// series open their windows out of id order (devices not in step); a comparison sort of
/// 100,000 ids costs several ms in one loop turn.
void radixSort(std::vector<SeriesId>& ids) {
  if (ids.size() <= 256) {
    std::sort(ids.begin(), ids.end());
    return;
  }
  std::vector<SeriesId> tmp(ids.size());
  for (unsigned shift = 0; shift < 27; shift += 9) {
    std::size_t count[513] = {};
    for (SeriesId id : ids) ++count[((id >> shift) & 511u) + 1];
    for (std::size_t b = 1; b < 513; ++b) count[b] += count[b - 1];
    for (SeriesId id : ids) tmp[count[(id >> shift) & 511u]++] = id;
    ids.swap(tmp);
  }
}

struct SizeState {
  Nanos size = 0;
  std::uint32_t ring = 0;    ///< M
  std::uint32_t offset = 0;  ///< first window of this size within a series' windows
  std::vector<Due> due;      ///< M entries
};

/// A growable array in chunks of 256 elements: growing never copies what is there, so the
/// window state of 100,000 series costs what it holds, not up to twice that (a vector's
/// doubling) plus a moment with both the old and the new copy (issue 13: peak memory).
template <typename T>
class ChunkedArray {
 public:
  static constexpr std::size_t kChunk = 256;
  T& operator[](std::size_t i) { return chunks_[i / kChunk][i % kChunk]; }
  const T& operator[](std::size_t i) const { return chunks_[i / kChunk][i % kChunk]; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return chunks_.size() * kChunk; }
  void resize(std::size_t n, const T& fill = T{}) {  // grows only
    while (capacity() < n) chunks_.push_back(std::make_unique<T[]>(kChunk));
    for (std::size_t i = size_; i < n; ++i) (*this)[i] = fill;
    size_ = std::max(size_, n);
  }
  template <typename F>
  void forEach(F&& fn) const {
    for (std::size_t i = 0; i < size_; ++i) fn((*this)[i]);
  }
  /// Also the elements past size() in allocated chunks (the pool's spares).
  template <typename F>
  void forEachAllocated(F&& fn) const {
    for (std::size_t i = 0; i < capacity(); ++i) fn((*this)[i]);
  }
  /// One more element: the one at size(), as left there (a spare keeps its buffers).
  T& push() {
    if (capacity() == size_) chunks_.push_back(std::make_unique<T[]>(kChunk));
    return (*this)[size_++];
  }
  /// One element less (the last); frees chunks that are two past the last in use, so memory
  /// goes back after a burst without a free and an allocation at a chunk's edge. `on_free` sees
  /// each element of a chunk before the chunk is freed (the pool's byte count).
  template <typename F>
  void pop(F&& on_free) {
    --size_;
    while (chunks_.size() > size_ / kChunk + 2) {
      for (std::size_t i = 0; i < kChunk; ++i) on_free(chunks_.back()[i]);
      chunks_.pop_back();
    }
  }
  void pop() {
    pop([](const T&) {});
  }

 private:
  std::vector<std::unique_ptr<T[]>> chunks_;
  std::size_t size_ = 0;
};

struct Closing {
  Nanos end;
  SeriesId series;
  std::uint32_t size_index;
  bool operator<(const Closing& o) const {
    return std::tie(end, series, size_index) < std::tie(o.end, o.series, o.size_index);
  }
};

class WindowAggregator final : public Aggregator {
 public:
  WindowAggregator(const WindowOptions& options, EmitFn emit)
      : options_(options), emit_(std::move(emit)) {
    stats_set_ = static_cast<StatSet>(options.stats | kDefaultStats);
    extras_on_ = has(stats_set_, Stat::kStddev) || has(stats_set_, Stat::kFirst) ||
                 has(stats_set_, Stat::kLast);
    Nanos largest = 0;
    std::vector<Nanos> sizes = options.sizes;
    std::sort(sizes.begin(), sizes.end());
    for (Nanos size : sizes) {
      SizeState s;
      s.size = size;
      const Nanos lateness_windows = (options.allowed_lateness + size - 1) / size;
      s.ring = static_cast<std::uint32_t>(lateness_windows + 1);
      s.offset = windows_per_series_;
      s.due.resize(s.ring);
      windows_per_series_ += s.ring;
      sizes_.push_back(std::move(s));
      largest = std::max(largest, size);
    }
    min_time_ = kNone + largest;
    max_time_ = kMaxNanos - largest;
    for (std::uint32_t p : {50u, 95u, 99u}) {
      const Stat s = p == 50 ? Stat::kP50 : p == 95 ? Stat::kP95 : Stat::kP99;
      if (has(stats_set_, s)) percents_.push_back(p);
    }
  }

  void add(SeriesId series, Nanos event_time, double value, std::uint64_t seq) override {
    feed(series, event_time, value, seq, false);
  }

  void replay(SeriesId series, Nanos event_time, double value, std::uint64_t seq) override {
    feed(series, event_time, value, seq, true);
  }

  void advanceWallTime(Nanos now) override {
    raiseWatermark(saturatingSub(now, options_.allowed_lateness));
  }

  void restoreClosed(SeriesId series, Nanos size, Nanos end) override {
    ensureSeries(series);
    const std::uint32_t k = sizeIndex(size);
    const std::size_t at = static_cast<std::size_t>(series) * sizes_.size() + k;
    restored_ends_.resize(std::max(restored_ends_.size(), at + 1), kNone);
    restored_ends_[at] = std::max(restored_ends_[at], end);
    for (std::uint32_t p = 0; p < sizes_[k].ring; ++p) {  // called before its readings: a bug
      const Window* w = windowAt(series, k, p);
      require(w == nullptr || w->start + size > end);
    }
  }

  void restoreWatermark(Nanos watermark) override {
    require(open_windows_ == 0);  // called before any reading: a bug otherwise
    watermark_ = std::max(watermark_, watermark);
  }

  std::optional<Nanos> nextWallDeadline() const override {
    if (open_windows_ == 0) return std::nullopt;
    return next_due_ > kMaxNanos - options_.allowed_lateness
               ? kMaxNanos
               : next_due_ + options_.allowed_lateness;
  }

  Nanos watermark() const override {
    return pending_.empty() ? watermark_ : std::min(watermark_, pending_.front().end - 1);
  }

  std::uint64_t replayFrom() const override {
    std::uint64_t from = last_seq_ + 1;
    for (const auto& s : sizes_)
      for (const auto& d : s.due)
        if (d.end != kNone) from = std::min(from, d.first_seq);
    for (const auto& g : pending_) from = std::min(from, g.first_seq);
    return from;
  }

  void setCloseBudget(std::size_t max) override { budget_ = max; }

  std::size_t closeSome(std::size_t max) override {
    for (std::size_t n = 0; n < max && !pending_.empty(); ++n) {
      const Closing c = popPending();
      close(c);
      last_closed_ = c;
    }
    if (pending_.empty()) std::deque<PendingGroup>().swap(pending_);
    return pending_count_;
  }

  std::size_t closing() const override { return pending_count_; }

  std::optional<WindowKey> closedThrough() const override {
    if (pending_.empty() || !last_closed_ || last_closed_->end != pending_.front().end)
      return std::nullopt;
    return WindowKey{last_closed_->end, last_closed_->series,
                     sizes_[last_closed_->size_index].size};
  }

  void restorePartial(const WindowKey& key) override {
    require(open_windows_ == 0);  // called before any reading: a bug otherwise
    partial_ = Closing{key.end, key.series, sizeIndex(key.size)};
  }

  AggregatorStats stats() const override {
    AggregatorStats s = counters_;
    s.open_windows = open_windows_;
    s.series = series_count_;
    s.watermark = watermark_;
    return s;
  }

  std::size_t memoryBytes() const override {
    std::size_t bytes =
        sizeof(*this) + slots_.capacity() * sizeof(Slot) +
        restored_ends_.capacity() * sizeof(Nanos) +
        window_refs_.capacity() * sizeof(std::uint32_t) + pool_.capacity() * sizeof(Window) +
        extras_.capacity() * sizeof(Extras) + pending_.size() * sizeof(PendingGroup) +
        sizes_.capacity() * sizeof(SizeState) + percents_.capacity() * sizeof(std::uint32_t);
    for (const auto& s : sizes_) {
      bytes += s.due.capacity() * sizeof(Due);
      for (const auto& d : s.due) bytes += d.series.capacity() * sizeof(SeriesId);
    }
    for (const auto& g : pending_) bytes += g.series.capacity() * sizeof(SeriesId);
    // The windows' sample buffers and sketches, spares included: counted as they change
    // (issue 13: a status request does not walk 100,000 windows).
    return bytes + buffer_bytes_;
  }

  std::size_t walkedMemoryBytes() const override {
    std::size_t bytes = memoryBytes() - buffer_bytes_;
    pool_.forEachAllocated([&](const Window& w) { bytes += bufferBytes(w); });
    return bytes;
  }

  std::size_t openWindows() const override { return open_windows_; }

 private:
  std::uint32_t sizeIndex(Nanos size) const {
    for (std::uint32_t k = 0; k < sizes_.size(); ++k)
      if (sizes_[k].size == size) return k;
    require(false);  // not a configured size: a bug
    return 0;
  }

  /// Windows of (series, size k) ending at or before it closed before a restart.
  Nanos restoredEnd(SeriesId series, std::uint32_t k) const {
    const std::size_t at = static_cast<std::size_t>(series) * sizes_.size() + k;
    return at < restored_ends_.size() ? restored_ends_[at] : kNone;
  }

  std::uint32_t& windowRef(SeriesId series, std::uint32_t k, std::uint32_t p) {
    return window_refs_[static_cast<size_t>(series) * windows_per_series_ + sizes_[k].offset + p];
  }
  /// The open (or closing) window at that ring position, or nullptr.
  Window* windowAt(SeriesId series, std::uint32_t k, std::uint32_t p) {
    const std::uint32_t i = windowRef(series, k, p);
    return i == kNoWindow ? nullptr : &pool_[i];
  }
  /// A pooled window state for ring position `at` (its buffers are those a closed window left).
  Window& takeWindow(std::size_t at) {
    require(pool_.size() < kNoWindow);
    window_refs_[at] = static_cast<std::uint32_t>(pool_.size());
    Window& w = pool_.push();
    w.ref_at = static_cast<std::uint32_t>(at);
    if (extras_on_) extras_.push();
    return w;
  }
  /// Gives back the state of a closed window: the pool stays dense (the last one moves into
  /// its place), so it holds as many states as windows are open, and shrinks after a burst.
  void releaseWindow(std::uint32_t i) {
    window_refs_[pool_[i].ref_at] = kNoWindow;
    const std::uint32_t last = static_cast<std::uint32_t>(pool_.size() - 1);
    if (i != last) {
      std::swap(pool_[i], pool_[last]);  // the closed one's buffers stay as the spare
      window_refs_[pool_[i].ref_at] = i;
      if (extras_on_) extras_[i] = extras_[last];
    }
    pool_.pop([this](const Window& spare) { buffer_bytes_ -= bufferBytes(spare); });
    if (extras_on_) extras_.pop();
  }
  std::size_t refIndex(SeriesId series, std::uint32_t k, std::uint32_t p) const {
    return static_cast<size_t>(series) * windows_per_series_ + sizes_[k].offset + p;
  }

  void ensureSeries(SeriesId series) {
    if (series < series_count_) return;
    require(series < kMaxSeries);
    series_count_ = series + 1;
    slots_.resize(static_cast<size_t>(series_count_) * sizes_.size());
    // A window's ref_at is 32 bits.
    require(static_cast<std::uint64_t>(series_count_) * windows_per_series_ <=
            std::numeric_limits<std::uint32_t>::max());
    window_refs_.resize(static_cast<size_t>(series_count_) * windows_per_series_, kNoWindow);
  }

  void feed(SeriesId series, Nanos t, double value, std::uint64_t seq, bool replaying) {
    if (!std::isfinite(value) || t < min_time_ || t > max_time_) {
      ++counters_.rejected;
      return;
    }
    ensureSeries(series);
    if (seq > last_seq_) last_seq_ = seq;
    if (t > highest_) {
      highest_ = t;
      raiseWatermark(saturatingSub(t, options_.allowed_lateness));
    }
    bool accepted = false;
    for (std::uint32_t k = 0; k < sizes_.size(); ++k)
      accepted |= addTo(series, k, t, value, seq, replaying);
    if (accepted) ++counters_.readings;
  }

  /// Returns false when the reading's window of this size is closed.
  bool addTo(SeriesId series, std::uint32_t k, Nanos t, double value, std::uint64_t seq,
             bool replaying) {
    const SizeState& size = sizes_[k];
    Slot& slot = slots_[static_cast<size_t>(series) * sizes_.size() + k];
    Window* w = windowAt(series, k, slot.last_ring);
    // (A window ending at or before the watermark is one waiting for closeSome().)
    if (w == nullptr || t < w->start || t - w->start >= size.size ||
        w->start + size.size <= watermark_) {
      const Nanos number = floorDiv(t, size.size);
      const Nanos start = number * size.size;
      const Nanos end = start + size.size;
      if (end <= watermark_ || end <= restoredEnd(series, k) ||
          (partial_ && end == partial_->end && !(*partial_ < Closing{end, series, k}))) {
        if (replaying) {
          ++counters_.replay_skipped;
        } else {
          ++counters_.late;
          if (slot.late_pending != std::numeric_limits<std::uint32_t>::max()) ++slot.late_pending;
        }
        return false;
      }
      const std::uint32_t p = ringIndex(number, size.ring);
      w = windowAt(series, k, p);
      slot.last_ring = p;
      if (w != nullptr && w->start != start) {
        // Its ring position still holds a window waiting for closeSome(): close them all now.
        require(w->start + size.size <= watermark_);
        closeSome(std::numeric_limits<std::size_t>::max());
        w = windowAt(series, k, p);
        require(w == nullptr);
      }
      if (w == nullptr) {
        w = &takeWindow(refIndex(series, k, p));
        open(*w, start, t, value);
        Due& due = sizes_[k].due[p];
        if (due.end == kNone) {
          due.end = end;
          due.first_seq = seq;
          next_due_ = std::min(next_due_, end);
        }
        assert(due.end == end);
        if (!due.series.empty() && due.series.back() >= series) due.sorted = false;
        due.series.push_back(series);
        return true;
      }
      require(w->start == start);  // the ring argument in the file comment
    }
    update(*w, t, value);
    return true;
  }

  Extras* extrasOf(const Window& w) {
    return extras_on_ ? &extras_[window_refs_[w.ref_at]] : nullptr;
  }

  void open(Window& w, Nanos start, Nanos t, double value) {
    ++open_windows_;
    w.start = start;
    w.count = 1;
    w.min = w.max = value;
    w.sum = value;
    w.compensation = 0;
    if (Extras* x = extrasOf(w)) {
      x->shift = value;
      x->shifted_sum = x->shifted_squares = 0;
      x->first_time = x->last_time = t;
      x->first = x->last = value;
    }
  }

  void update(Window& w, Nanos t, double value) {
    const double old_min = w.min, old_max = w.max;  // the values while count ≤ 2
    ++w.count;
    w.min = std::min(w.min, value);
    w.max = std::max(w.max, value);
    const double s = w.sum + value;
    if (std::fabs(w.sum) >= std::fabs(value))
      w.compensation += (w.sum - s) + value;
    else
      w.compensation += (value - s) + w.sum;
    w.sum = s;
    if (Extras* x = extrasOf(w)) {
      const double d = value - x->shift;
      x->shifted_sum += d;
      x->shifted_squares += d * d;
      if (t < x->first_time) {
        x->first_time = t;
        x->first = value;
      }
      if (t >= x->last_time) {
        x->last_time = t;
        x->last = value;
      }
    }
    if (w.count <= options_.sample_cap) {
      const std::size_t had = w.samples.capacity();  // only grows here
      if (w.count == 3) {
        // Room for 8 at once: a window of 10 readings (a sensor at 1/s) keeps 8 samples with
        // one allocation instead of three (3, 6, 12); pooled windows keep it when reused.
        if (w.samples.capacity() < kFirstSamples)
          w.samples.reserve(std::min<std::size_t>(kFirstSamples, options_.sample_cap));
        w.samples.push_back(old_min, options_.sample_cap);
        w.samples.push_back(old_max, options_.sample_cap);
      }
      if (w.count >= 3) w.samples.push_back(value, options_.sample_cap);
      buffer_bytes_ += (w.samples.capacity() - had) * sizeof(double);
      return;
    }
    const std::size_t had = bufferBytes(w);
    if (!w.sketch)
      w.sketch =
          std::make_unique<QuantileSketch>(options_.sketch_alpha, options_.sketch_max_buckets);
    if (w.count == options_.sample_cap + std::uint64_t{1}) {
      if (w.count <= 3) {  // a cap of 1 or 2: the earlier values are {min, max}
        w.sketch->add(old_min);
        if (w.count == 3) w.sketch->add(old_max);
      }
      for (double v : w.samples) w.sketch->add(v);
      w.samples.clear();
    }
    w.sketch->add(value);
    buffer_bytes_ = buffer_bytes_ - had + bufferBytes(w);
  }

  void raiseWatermark(Nanos watermark) {
    if (watermark <= watermark_) return;
    watermark_ = watermark;
    if (watermark_ >= next_due_) closeDue();
  }

  void closeDue() {
    next_due_ = kMaxNanos;
    const std::size_t before = pending_.size();
    for (std::uint32_t k = 0; k < sizes_.size(); ++k) {
      for (Due& due : sizes_[k].due) {
        if (due.end == kNone) continue;
        if (due.end > watermark_) {
          next_due_ = std::min(next_due_, due.end);
          continue;
        }
        assert(!due.series.empty());  // an end is set by the first window opened for it
        if (!due.sorted) radixSort(due.series);
        pending_count_ += due.series.size();
        PendingGroup& g = pending_.emplace_back();
        g.end = due.end;
        g.k = k;
        g.first_seq = due.first_seq;
        g.series = std::move(due.series);
        due.series = std::vector<SeriesId>();
        due.sorted = true;
        due.end = kNone;
      }
    }
    // Every end waiting from an earlier step is at or below the previous watermark, below
    // these: the groups stay in (end, size) order; popPending() merges groups of one end (two
    // sizes sharing it) by series, so the output is in (end, series, size) order.
    std::sort(pending_.begin() + static_cast<std::ptrdiff_t>(before), pending_.end(),
              [](const PendingGroup& a, const PendingGroup& b) {
                return std::tie(a.end, a.k) < std::tie(b.end, b.k);
              });
    if (partial_ && watermark_ >= partial_->end) partial_.reset();
    closeSome(budget_ == 0 ? std::numeric_limits<std::size_t>::max() : budget_);
  }

  /// The next window to close, in (end, series, size) order, taken off its group.
  Closing popPending() {
    std::size_t best = 0;
    const Nanos end = pending_.front().end;
    for (std::size_t i = 1; i < pending_.size() && pending_[i].end == end; ++i) {
      const PendingGroup& g = pending_[i];
      const PendingGroup& b = pending_[best];
      if (g.series[g.next] < b.series[b.next]) best = i;  // equal: the smaller size (earlier)
    }
    PendingGroup& g = pending_[best];
    const Closing c{g.end, g.series[g.next], g.k};
    ++g.next;
    --pending_count_;
    if (g.done()) pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(best));
    return c;
  }

  void close(const Closing& c) {
    const SizeState& size = sizes_[c.size_index];
    const Nanos start = c.end - size.size;
    const std::uint32_t ref =
        windowRef(c.series, c.size_index, ringIndex(floorDiv(start, size.size), size.ring));
    assert(ref != kNoWindow && pool_[ref].start == start);
    Window& w = pool_[ref];
    Slot& slot = slots_[static_cast<size_t>(c.series) * sizes_.size() + c.size_index];

    Aggregate& a = aggregate_;
    a = Aggregate{};
    a.series = c.series;
    a.size = size.size;
    a.start = start;
    a.count = w.count;
    a.min = w.min;
    a.max = w.max;
    const double sum = w.sum + w.compensation;
    a.avg = std::clamp(sum / static_cast<double>(w.count), w.min, w.max);
    a.stats = stats_set_;
    constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    a.sum = has(stats_set_, Stat::kSum) ? sum : kNaN;
    const Extras* x = extrasOf(w);
    if (has(stats_set_, Stat::kStddev)) {
      const double n = static_cast<double>(w.count);
      const double m = x->shifted_sum / n;
      a.stddev = std::sqrt(std::max(0.0, x->shifted_squares / n - m * m));
    } else {
      a.stddev = kNaN;
    }
    a.first = has(stats_set_, Stat::kFirst) ? x->first : kNaN;
    a.first_time = has(stats_set_, Stat::kFirst) ? x->first_time : 0;
    a.last = has(stats_set_, Stat::kLast) ? x->last : kNaN;
    a.last_time = has(stats_set_, Stat::kLast) ? x->last_time : 0;
    a.p50 = a.p99 = kNaN;
    quantiles(w, a);
    a.late = slot.late_pending;
    slot.late_pending = 0;

    ++counters_.windows_closed;
    if (a.quantiles != QuantileMode::kExact) ++counters_.sketch_windows;
    if (emit_) emit_(a);

    // Reset, keeping buffers for the next window unless this one used under a quarter of them.
    const std::uint64_t used = std::min<std::uint64_t>(w.count, options_.sample_cap);
    const std::size_t had = bufferBytes(w);
    if (w.samples.capacity() > 64 && w.samples.capacity() > 4 * used)
      w.samples.release();
    else
      w.samples.clear();
    if (w.sketch && w.count <= options_.sample_cap)
      w.sketch.reset();
    else if (w.sketch)
      w.sketch->clear();
    buffer_bytes_ = buffer_bytes_ - had + bufferBytes(w);
    w.start = kNone;
    w.count = 0;
    releaseWindow(ref);
    --open_windows_;
  }

  void quantiles(Window& w, Aggregate& a) {
    double* out[] = {&a.p50, &a.p95, &a.p99};
    auto target = [&](std::uint32_t p) { return p == 50 ? out[0] : p == 95 ? out[1] : out[2]; };
    if (w.count <= options_.sample_cap && w.count <= 2) {
      a.quantiles = QuantileMode::kExact;
      for (std::uint32_t p : percents_) *target(p) = nearestRank(p, w.count) == 1 ? w.min : w.max;
      return;
    }
    if (w.count <= options_.sample_cap) {
      a.quantiles = QuantileMode::kExact;
      // percents_ ascending: each nth_element only needs the part above the previous rank.
      auto from = w.samples.begin();
      for (std::uint32_t p : percents_) {
        const auto r = static_cast<std::ptrdiff_t>(nearestRank(p, w.count));
        auto nth = w.samples.begin() + (r - 1);
        if (nth >= from) {
          std::nth_element(from, nth, w.samples.end());
          from = nth + 1;
        }
        *target(p) = *nth;
      }
      return;
    }
    a.quantiles = w.sketch->collapsed() ? QuantileMode::kCollapsed : QuantileMode::kSketch;
    for (std::uint32_t p : percents_)
      *target(p) = std::clamp(w.sketch->valueAtRank(nearestRank(p, w.count)), w.min, w.max);
  }

  const WindowOptions options_;
  const EmitFn emit_;
  StatSet stats_set_ = kDefaultStats;
  std::vector<std::uint32_t> percents_;  ///< requested quantiles, ascending
  std::vector<SizeState> sizes_;         ///< ascending size
  std::uint32_t windows_per_series_ = 0;
  Nanos min_time_ = kNone, max_time_ = kMaxNanos;

  SeriesId series_count_ = 0;
  ChunkedArray<Slot> slots_;  ///< [series × sizes + k]
  /// [series × sizes + k] up to the highest restored by restoreClosed() (empty without one).
  ChunkedArray<Nanos> restored_ends_;
  /// [series × windows_per_series_ + offset_k + ring position]: index into pool_ or kNoWindow.
  /// 4 bytes per position; the 136-byte window states exist only while open (issue 13).
  ChunkedArray<std::uint32_t> window_refs_;
  ChunkedArray<Window> pool_;    ///< the open (and closing) windows, dense; spares past size()
  bool extras_on_ = false;       ///< stddev, first or last configured
  ChunkedArray<Extras> extras_;  ///< [pool index] when extras_on_

  Nanos highest_ = kNone;       ///< highest event time seen
  Nanos watermark_ = kNone;     ///< never goes back
  Nanos next_due_ = kMaxNanos;  ///< smallest end of an open window
  std::uint64_t last_seq_ = 0;
  std::uint64_t open_windows_ = 0;
  std::size_t buffer_bytes_ = 0;  ///< bufferBytes() of every pooled window, spares included
  AggregatorStats counters_;
  Aggregate aggregate_;
  // Slicing (setCloseBudget): the due lists handed over, whose windows wait to be closed; the
  // last window emitted; the half-emitted end restored after a restart.
  std::size_t budget_ = 0;
  std::deque<PendingGroup> pending_;  ///< in (end, size) order, none done()
  std::size_t pending_count_ = 0;     ///< windows waiting in pending_
  std::optional<Closing> last_closed_;
  std::optional<Closing> partial_;
};

}  // namespace

std::optional<std::string> validate(const WindowOptions& o) {
  if (o.sizes.empty()) return "at least one window size is needed";
  for (size_t i = 0; i < o.sizes.size(); ++i) {
    if (o.sizes[i] <= 0) return "a window size must be positive";
    if (o.sizes[i] > Nanos{366} * 86400 * kNanosPerSecond)
      return "a window size must be at most 366d";
    for (size_t j = 0; j < i; ++j)
      if (o.sizes[i] == o.sizes[j]) return "window sizes must be distinct";
  }
  if (o.allowed_lateness < 0) return "allowed_lateness must not be negative";
  for (Nanos size : o.sizes)
    if (o.allowed_lateness / size > 1000)
      return "allowed_lateness must be at most 1000 windows of the smallest size";
  if ((o.stats & ~kAllStats) != 0) return "unknown statistic";
  if (o.sample_cap < 1) return "sample_cap must be at least 1";
  if (!(o.sketch_alpha >= 1e-4 && o.sketch_alpha <= 0.5))
    return "sketch_alpha must be between 0.0001 and 0.5";
  if (o.sketch_max_buckets < 16) return "sketch_max_buckets must be at least 16";
  return std::nullopt;
}

std::unique_ptr<Aggregator> Aggregator::create(const WindowOptions& options, EmitFn emit) {
  if (auto error = validate(options)) throw std::invalid_argument(*error);
  return std::make_unique<WindowAggregator>(options, std::move(emit));
}

}  // namespace gw::aggregators
