#include "gateway/clock_table.h"

#include <cassert>
#include <utility>

namespace gw::clock {
namespace {
constexpr Nanos kRateInterval = 10 * kNanosPerSecond;
constexpr std::size_t kMinSlots = 16;

/// Index growth (issue 13): doubling from 16 slots while small (10,000 series: 16,384 slots,
/// 128 KiB), then, from 32,768 slots on, straight to what `max_entries` needs at 4/5 load (at
/// most 2^18 slots, 2 MiB). That step, at ~13,000 entries, takes 6-11 ms with the allocation
/// (development VM); the doublings it replaces would rehash 100,000 and 200,000 entries at once
/// (11 and 25 ms). Past ~209,000 entries the index doubles again (a stall of that size, once).
std::size_t grownSlots(std::size_t slots, std::size_t max_entries) {
  const std::size_t want = slots * 2;
  if (want < 32768) return want;
  const std::size_t target = std::min<std::size_t>(max_entries, (std::size_t{1} << 18) * 4 / 5);
  std::size_t full = 32768;
  while (full * 4 < target * 5) full *= 2;
  return std::max(want, full);
}

std::uint32_t hashOf(std::string_view device) {
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(device));
}
}  // namespace

ClockTable::ClockTable(ClockOptions options, std::size_t max_devices, Nanos idle)
    : options_(options), max_(std::min<std::size_t>(max_devices, kNil - 1)), idle_(idle) {
  index_.resize(kMinSlots);
}

std::size_t ClockTable::findSlot(std::string_view device, std::uint32_t hash) const {
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = index_[i];
    if (s.entry == kNil || (s.hash == hash && at(s.entry).name_ == device)) return i;
  }
}

std::size_t ClockTable::slotOf(std::uint32_t e) const {
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = at(e).hash_ & mask;; i = (i + 1) & mask) {
    assert(index_[i].entry != kNil);
    if (index_[i].entry == e) return i;
  }
}

void ClockTable::eraseSlot(std::size_t pos) {
  // Backward-shift deletion: no tombstones, so lookups stay short after many evictions.
  const std::size_t mask = index_.size() - 1;
  std::size_t hole = pos;
  for (std::size_t j = (hole + 1) & mask; index_[j].entry != kNil; j = (j + 1) & mask) {
    const std::size_t home = index_[j].hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {  // home is not in (hole, j]
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = Slot{};
}

void ClockTable::resizeIndex(std::size_t slots) {
  std::vector<Slot> old(slots);
  old.swap(index_);
  const std::size_t mask = slots - 1;
  for (const Slot& s : old) {
    if (s.entry == kNil) continue;
    std::size_t i = s.hash & mask;
    while (index_[i].entry != kNil) i = (i + 1) & mask;
    index_[i] = s;
  }
}

void ClockTable::unlink(std::uint32_t i) {
  Entry& e = at(i);
  (e.older_ == kNil ? oldest_ : at(e.older_).newer_) = e.newer_;
  (e.newer_ == kNil ? newest_ : at(e.newer_).older_) = e.older_;
}

void ClockTable::linkNewest(std::uint32_t i) {
  Entry& e = at(i);
  e.older_ = newest_;
  e.newer_ = kNil;
  (newest_ == kNil ? oldest_ : at(newest_).newer_) = i;
  newest_ = i;
}

SkewEstimator* ClockTable::use(std::string_view device, Nanos now) {
  const std::uint32_t hash = hashOf(device);
  std::size_t pos = findSlot(device, hash);
  std::uint32_t i = index_[pos].entry;
  if (i == kNil) {
    if (size_ >= max_) {
      ++refused_;
      return nullptr;
    }
    if ((size_ + 1) * 5 > index_.size() * 4) {
      resizeIndex(grownSlots(index_.size(), max_));
      pos = findSlot(device, hash);
    }
    i = size_++;
    if (i / kChunk == chunks_.size()) chunks_.push_back(std::make_unique<Entry[]>(kChunk));
    Entry& e = at(i);
    e = Entry(options_);
    e.name_.assign(device);
    e.hash_ = hash;
    e.mark = now;
    index_[pos] = Slot{i, hash};
    linkNewest(i);
  } else if (i != newest_) {
    unlink(i);
    linkNewest(i);  // most recently used last
  }
  Entry& e = at(i);
  e.last_use = now;
  if (now - e.mark >= kRateInterval) {
    const std::uint64_t samples = e.estimator.state().samples;
    e.rate = static_cast<float>(static_cast<double>(samples - e.mark_samples) * kNanosPerSecond /
                                static_cast<double>(now - e.mark));
    e.mark = now;
    e.mark_samples = samples;
  }
  return &e.estimator;
}

std::optional<Correction> ClockTable::observe(std::string_view device, Nanos now, Nanos device_time,
                                              Nanos reference_time, TimeReference reference) {
  SkewEstimator* e = use(device, now);
  if (e == nullptr) return std::nullopt;
  const DeviceClock before = e->state();
  const Correction c = e->observe(device_time, reference_time, reference);
  const DeviceClock& after = e->state();
  out_of_bounds_ = out_of_bounds_ - before.out_of_bounds + after.out_of_bounds;
  steps_ += after.steps - before.steps;
  if (before.out_of_bounds != after.out_of_bounds) {
    if (after.out_of_bounds)
      skewed_.emplace(device);
    else if (auto it = skewed_.find(device); it != skewed_.end())
      skewed_.erase(it);
  }
  return c;
}

void ClockTable::remove(std::uint32_t i) {
  Entry& e = at(i);
  out_of_bounds_ -= e.estimator.state().out_of_bounds;
  steps_ -= e.estimator.state().steps;
  if (e.estimator.state().out_of_bounds) skewed_.erase(e.name_);
  unlink(i);
  eraseSlot(slotOf(i));
  const std::uint32_t last = size_ - 1;
  if (i != last) {  // the last entry moves into the hole: the array stays dense
    index_[slotOf(last)].entry = i;
    Entry& moved = at(last);
    (moved.older_ == kNil ? oldest_ : at(moved.older_).newer_) = i;
    (moved.newer_ == kNil ? newest_ : at(moved.newer_).older_) = i;
    e = std::move(moved);
  }
  at(last) = Entry();  // its heap (history, a long name) goes back
  --size_;
}

std::size_t ClockTable::evictIdle(Nanos now) {
  std::size_t n = 0;
  while (oldest_ != kNil && now - at(oldest_).last_use >= idle_) {
    remove(oldest_);
    ++n;
  }
  evicted_ += n;
  if (n > 0) {
    // Chunks past the last entry in use (one spare kept), and an index 8 times too large.
    while (chunks_.size() > (size_ + kChunk - 1) / kChunk + 1) chunks_.pop_back();
    std::size_t slots = index_.size();
    while (slots > kMinSlots && size_ * 8 < slots) slots /= 2;
    if (slots != index_.size()) resizeIndex(slots);
  }
  return n;
}

std::size_t ClockTable::memoryBytes() const {
  std::size_t bytes = sizeof(*this) + chunks_.capacity() * sizeof(chunks_[0]) +
                      chunks_.size() * kChunk * sizeof(Entry) + index_.capacity() * sizeof(Slot);
  for (std::uint32_t i = 0; i < size_; ++i) {
    const Entry& e = at(i);
    bytes += e.estimator.heapBytes();
    if (e.name_.capacity() > std::string().capacity()) bytes += e.name_.capacity() + 1;
  }
  return bytes;
}

std::optional<double> ClockTable::rate(const Entry& e, Nanos now) const {
  // Since the mark when that is at least 1 s ago (a silent device decays towards 0), else
  // the previous interval's rate.
  if (now - e.mark >= kNanosPerSecond)
    return static_cast<double>(e.estimator.state().samples - e.mark_samples) * kNanosPerSecond /
           static_cast<double>(now - e.mark);
  if (e.rate >= 0) return e.rate;
  return std::nullopt;
}

void ClockTable::forEach(const std::function<void(const std::string&, const Entry&)>& fn) const {
  for (std::uint32_t i = 0; i < size_; ++i) fn(at(i).name_, at(i));
}

std::size_t ClockTable::forEachIn(
    std::size_t begin, std::size_t end,
    const std::function<void(const std::string&, const Entry&)>& fn) const {
  for (std::size_t i = begin; i < std::min<std::size_t>(end, size_); ++i) {
    const Entry& e = at(static_cast<std::uint32_t>(i));
    fn(e.name_, e);
  }
  return size_;
}

}  // namespace gw::clock
