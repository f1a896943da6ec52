// The per-device clock estimators, bounded (design: "Limits and scale"): at most `max_devices`
// of them, the least recently seen evicted once idle for `idle`. Eviction and the per-device
// message rate cost O(1) per reading and O(evicted) per sweep: nothing scans every device.
//
// Memory (issue 13): one dense array of entries (56 bytes each on x86-64) and an
// open-addressing index of 8 bytes per slot; no node per device, no list node, nothing reserved
// up front. A device's first samples (up to 8) are kept as they came, 16 bytes each; past them
// it has a SkewEstimator on the heap (248 bytes with its history of 16 segment minima inline:
// one allocation).
//
// Threading: the pipeline's event loop only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/slot_index.h"
#include "core/time.h"
#include "gateway/clock_skew.h"

namespace gw::clock {

class ClockTable {
 public:
  /// One device. Entries live in one dense array (a chunk of 256 at a time, never copied when
  /// it grows) and move when another is evicted: do not keep a pointer across evictIdle().
  /// A device's name: a string of the caller's that outlives the entry (the journal's
  /// Series::device: the journal's series never move or go while it is open) or, without one,
  /// an owned copy. 8 bytes (the low bit says owned) instead of a 32-byte std::string per
  /// device (issue 13: one copy of each name).
  class Name {
   public:
    Name() = default;
    Name(const Name&) = delete;
    Name& operator=(const Name&) = delete;
    Name(Name&& o) noexcept : p_(std::exchange(o.p_, 0)) {}
    Name& operator=(Name&& o) noexcept {
      if (this != &o) {
        reset();
        p_ = std::exchange(o.p_, 0);
      }
      return *this;
    }
    ~Name() { reset(); }
    void set(std::string_view name, const std::string* stable) {
      reset();
      p_ = stable != nullptr ? reinterpret_cast<std::uintptr_t>(stable)
                             : reinterpret_cast<std::uintptr_t>(new std::string(name)) | 1;
    }
    const std::string& get() const {
      static const std::string kEmpty;
      return p_ == 0 ? kEmpty : *reinterpret_cast<const std::string*>(p_ & ~std::uintptr_t{1});
    }
    bool owned() const { return (p_ & 1) != 0; }
    /// What an owned copy holds on the heap.
    std::size_t heapBytes() const {
      if (!owned()) return 0;
      const std::string& s = get();
      return sizeof(std::string) + (s.capacity() > std::string().capacity() ? s.capacity() + 1 : 0);
    }

   private:
    void reset() {
      if (owned()) delete reinterpret_cast<std::string*>(p_ & ~std::uintptr_t{1});
      p_ = 0;
    }
    std::uintptr_t p_ = 0;  ///< std::string's alignment leaves the low bit free
  };

  /// One device's clock estimate, small while the device has sent few samples (issue 13: at
  /// 100,000 devices the estimators were the largest part of the heap, and a device seen once or
  /// a few times needs no filter state kept). Up to kLiteSamples observations are kept as they
  /// came (16 bytes each, in an array grown by need); every request replays them into a scratch
  /// SkewEstimator, so the results are exactly those of a SkewEstimator fed the same samples.
  /// The next observation moves the device to its own SkewEstimator on the heap (the replay
  /// once more). 16 bytes in the entry (the last 4 left for the entry's next field).
  class DeviceEstimator {
   public:
    static constexpr int kLiteSamples = 8;
    static_assert(kLiteSamples < 16 && (kLiteSamples - 1) / 2 < 8, "count_ and steps_ bits");

    DeviceEstimator() = default;
    /// `options`: internedIndex() of the options (the table's).
    explicit DeviceEstimator(std::uint16_t options) : options_(options) {}
    DeviceEstimator(const DeviceEstimator&) = delete;
    DeviceEstimator& operator=(const DeviceEstimator&) = delete;
    DeviceEstimator(DeviceEstimator&& o) noexcept { *this = std::move(o); }
    DeviceEstimator& operator=(DeviceEstimator&& o) noexcept;
    ~DeviceEstimator() { release(); }

    /// The device's clock (SkewEstimator::state() of the same samples).
    DeviceClock state() const;
    std::uint64_t samples() const { return full() ? own()->samples() : count_; }
    /// SkewEstimator's outOfBounds() and steps() (kept beside the samples while there is no
    /// estimator: eviction reads them without a replay).
    bool outOfBounds() const { return full() ? own()->outOfBounds() : out_of_bounds_; }
    std::uint32_t steps() const { return full() ? own()->steps() : steps_; }
    /// Whether the device has its own SkewEstimator (more than kLiteSamples samples, or use()).
    bool full() const { return (p_ & 1) != 0; }
    /// Heap bytes held (the sample array or the estimator with its history).
    std::size_t heapBytes() const;

   private:
    friend class ClockTable;
    struct Sample {
      Nanos device_time;
      Nanos reference_time;
    };
    struct Change {  // what the table's totals need from one observation
      bool out_before = false, out_after = false;
      std::uint32_t steps_before = 0, steps_after = 0;
    };
    /// SkewEstimator::observe(device_time, reference_time, reference), with the totals' change.
    Correction observe(Nanos device_time, Nanos reference_time, TimeReference reference,
                       const ClockOptions* interned, Change& change);
    /// The device's own estimator, made from the kept samples when it has none yet.
    SkewEstimator& promote(const ClockOptions* interned);
    /// The kept samples replayed into the scratch estimator (loop thread only).
    SkewEstimator& replay(const ClockOptions* interned) const;
    SkewEstimator* own() const { return reinterpret_cast<SkewEstimator*>(p_ & ~std::uintptr_t{1}); }
    Sample* lite() const { return reinterpret_cast<Sample*>(p_); }
    static int capacityFor(int count) {
      return count <= 2 ? count : count <= 4 ? 4 : count <= 6 ? 6 : kLiteSamples;
    }
    void release();

    std::uintptr_t p_ = 0;        ///< Sample[capacityFor(count_)], or SkewEstimator* | 1
    std::uint8_t count_ : 4 = 0;  ///< samples kept (while not full)
    /// While not full: outOfBounds() and steps() of the samples (a step takes 2 samples
    /// after the first, so at most 3 in kLiteSamples).
    std::uint8_t out_of_bounds_ : 1 = 0;
    std::uint8_t steps_ : 3 = 0;
    TimeReference reference_ = TimeReference::kReceive;  ///< of the last kept sample
    std::uint16_t options_ = 0;                          ///< internedIndex of the options
  };

  struct Entry {
    /// The device's clock (no_unique_address: hash_ goes in its tail padding).
    [[no_unique_address]] DeviceEstimator estimator;

   private:
    friend class ClockTable;
    std::uint32_t hash_ = 0;

   public:
    Nanos last_use = 0;  ///< monotonic
    // The message rate: samples counted since a mark that moves every ~10 s (the count modulo
    // 2^32: only differences over ~10 s are used).
    Nanos mark = 0;
    std::uint32_t mark_samples = 0;
    float rate = -1;  ///< over the previous mark interval; < 0: none yet

    Entry() = default;
    explicit Entry(std::uint16_t options) : estimator(options) {}

   private:
    std::uint32_t older_ = 0, newer_ = 0;  ///< the idle order (an intrusive list of indices)
    Name name_;
  };

  ClockTable(ClockOptions options, std::size_t max_devices, Nanos idle);

  /// The device's own estimator (made from its kept samples when it has none yet: see
  /// DeviceEstimator), the entry created when new; nullptr when the table is full (the caller
  /// goes on without clock correction). observe() is the cheaper way to feed a sample. `now` is
  /// monotonic. `stable_name`, when given, equals `device` and lives longer than the table (the
  /// journal's copy of the name): a new entry keeps a pointer to it instead of a copy.
  SkewEstimator* use(std::string_view device, Nanos now, const std::string* stable_name = nullptr);
  /// use() and the estimator's observe() in one, keeping outOfBounds() and steps() exact
  /// without a pass over the devices. nullopt when the table is full.
  std::optional<Correction> observe(std::string_view device, Nanos now, Nanos device_time,
                                    Nanos reference_time, TimeReference reference,
                                    const std::string* stable_name = nullptr);
  /// Devices whose offset is beyond max_skew, and steps of the devices in the table (kept up
  /// to date by observe() and eviction: status reads them in O(1)).
  std::uint64_t outOfBounds() const { return out_of_bounds_; }
  std::uint64_t steps() const { return steps_; }
  /// The names of those devices, sorted (status names the first few without a pass).
  const std::set<std::string, std::less<>>& outOfBoundsNames() const { return skewed_; }
  /// Drops the estimators idle for longer than `idle` (oldest first); returns how many. The
  /// memory they held goes back (the array and the index shrink).
  std::size_t evictIdle(Nanos now);

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return max_; }
  /// Devices refused because the table was full (readings, not distinct devices).
  std::uint64_t refused() const { return refused_; }
  std::uint64_t evicted() const { return evicted_; }
  /// Bytes held: the entry array, the index and the estimators' heap (not malloc overhead).
  std::size_t memoryBytes() const;

  /// Samples per second of one device at `now` (monotonic), or none before 1 s of history.
  std::optional<double> rate(const Entry& e, Nanos now) const;
  /// Every entry (for views; O(devices): on request only, never per tick).
  void forEach(const std::function<void(const std::string&, const Entry&)>& fn) const;
  /// The entries at positions [begin, end) of forEach's order (a slice of a view walked
  /// across turns of the loop: O(end - begin), whatever the table's size); returns size().
  std::size_t forEachIn(std::size_t begin, std::size_t end,
                        const std::function<void(const std::string&, const Entry&)>& fn) const;

 private:
  static constexpr std::uint32_t kNil = SlotIndex::kNone;
  static constexpr std::size_t kChunk = 256;
  Entry& at(std::uint32_t i) { return chunks_[i / kChunk][i % kChunk]; }
  const Entry& at(std::uint32_t i) const { return chunks_[i / kChunk][i % kChunk]; }
  /// The device's entry (created when new, marked used at `now`); nullptr when the table is full.
  Entry* find(std::string_view device, Nanos now, const std::string* stable_name);
  void unlink(std::uint32_t i);
  void linkNewest(std::uint32_t i);
  void remove(std::uint32_t i);

  ClockOptions options_;
  const ClockOptions* interned_;  ///< internOptions(options_)
  std::uint16_t options_index_;   ///< internedIndex(interned_)
  std::size_t max_;
  Nanos idle_;
  std::vector<std::unique_ptr<Entry[]>> chunks_;
  std::uint32_t size_ = 0;
  SlotIndex index_;  ///< device name's hash -> entry
  std::uint32_t oldest_ = kNil, newest_ = kNil;
  std::uint64_t refused_ = 0, evicted_ = 0;
  std::uint64_t out_of_bounds_ = 0, steps_ = 0;
  std::set<std::string, std::less<>> skewed_;  ///< devices out of bounds
};

}  // namespace gw::clock
