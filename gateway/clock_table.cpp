#include "gateway/clock_table.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace gw::clock {
namespace {
constexpr Nanos kRateInterval = 10 * kNanosPerSecond;

std::uint32_t hashOf(std::string_view device) {
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(device));
}
}  // namespace

ClockTable::DeviceEstimator& ClockTable::DeviceEstimator::operator=(DeviceEstimator&& o) noexcept {
  if (this != &o) {
    release();
    p_ = std::exchange(o.p_, 0);
    count_ = o.count_;
    out_of_bounds_ = o.out_of_bounds_;
    steps_ = o.steps_;
    o.count_ = 0;
    reference_ = o.reference_;
    options_ = o.options_;
  }
  return *this;
}

void ClockTable::DeviceEstimator::release() {
  if (full())
    delete own();
  else
    delete[] lite();
  p_ = 0;
  count_ = 0;
  out_of_bounds_ = 0;
  steps_ = 0;
}

std::size_t ClockTable::DeviceEstimator::heapBytes() const {
  if (full()) return sizeof(SkewEstimator) + own()->heapBytes();
  return static_cast<std::size_t>(capacityFor(count_)) * sizeof(Sample);
}

SkewEstimator& ClockTable::DeviceEstimator::replay(const ClockOptions* interned) const {
  // One scratch estimator for the loop's thread: its history and candidate stay allocated, so
  // a replay allocates nothing.
  thread_local SkewEstimator scratch = SkewEstimator::withInterned(interned);
  scratch.reset(interned);
  const Sample* s = lite();
  for (int i = 0; i < count_; ++i)
    scratch.observe(s[i].device_time, s[i].reference_time,
                    i + 1 == count_ ? reference_ : TimeReference::kReceive);
  return scratch;
}

DeviceClock ClockTable::DeviceEstimator::state() const {
  if (full()) return own()->state();
  return replay(internedOptions(options_)).state();
}

SkewEstimator& ClockTable::DeviceEstimator::promote(const ClockOptions* interned) {
  if (full()) return *own();
  auto e = std::make_unique<SkewEstimator>(SkewEstimator::withInterned(interned));
  const Sample* s = lite();
  for (int i = 0; i < count_; ++i)
    e->observe(s[i].device_time, s[i].reference_time,
               i + 1 == count_ ? reference_ : TimeReference::kReceive);
  release();
  p_ = reinterpret_cast<std::uintptr_t>(e.release()) | 1;
  return *own();
}

Correction ClockTable::DeviceEstimator::observe(Nanos device_time, Nanos reference_time,
                                                TimeReference reference,
                                                const ClockOptions* interned, Change& change) {
  SkewEstimator* e = full() ? own() : nullptr;
  if (e == nullptr && count_ >= kLiteSamples) e = &promote(interned);
  if (e == nullptr) {
    // Replayed: the state before this sample, then this sample; the sample is kept.
    SkewEstimator& r = replay(interned);
    change.out_before = out_of_bounds_;
    change.steps_before = steps_;
    const Correction c = r.observe(device_time, reference_time, reference);
    change.out_after = r.outOfBounds();
    change.steps_after = r.steps();
    out_of_bounds_ = change.out_after;
    steps_ = static_cast<std::uint8_t>(std::min<std::uint32_t>(change.steps_after, 7));
    const int capacity = capacityFor(count_);
    if (count_ == capacity) {
      auto grown = std::make_unique<Sample[]>(static_cast<std::size_t>(capacityFor(count_ + 1)));
      std::copy_n(lite(), count_, grown.get());
      delete[] lite();
      p_ = reinterpret_cast<std::uintptr_t>(grown.release());
    }
    lite()[count_++] = {device_time, reference_time};
    reference_ = reference;
    return c;
  }
  change.out_before = e->outOfBounds();
  change.steps_before = e->steps();
  const Correction c = e->observe(device_time, reference_time, reference);
  change.out_after = e->outOfBounds();
  change.steps_after = e->steps();
  return c;
}

ClockTable::ClockTable(ClockOptions options, std::size_t max_devices, Nanos idle)
    : options_(options),
      interned_(internOptions(options_)),
      options_index_(internedIndex(interned_)),
      max_(std::min<std::size_t>(max_devices, kNil - 1)),
      idle_(idle),
      index_(max_) {}

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

ClockTable::Entry* ClockTable::find(std::string_view device, Nanos now,
                                    const std::string* stable_name) {
  const std::uint32_t hash = hashOf(device);
  std::uint32_t i = index_.find(hash, [&](std::uint32_t e) { return at(e).name_.get() == device; });
  if (i == kNil) {
    if (size_ >= max_) {
      ++refused_;
      return nullptr;
    }
    i = size_++;
    if (i / kChunk == chunks_.size()) chunks_.push_back(std::make_unique<Entry[]>(kChunk));
    Entry& e = at(i);
    e = Entry(options_index_);
    e.name_.set(device, stable_name);
    e.hash_ = hash;
    e.mark = now;
    index_.insert(i, hash);
    linkNewest(i);
  } else if (i != newest_) {
    unlink(i);
    linkNewest(i);  // most recently used last
  }
  Entry& e = at(i);
  e.last_use = now;
  if (now - e.mark >= kRateInterval) {
    const auto samples = static_cast<std::uint32_t>(e.estimator.samples());
    e.rate = static_cast<float>(static_cast<double>(samples - e.mark_samples) * kNanosPerSecond /
                                static_cast<double>(now - e.mark));
    e.mark = now;
    e.mark_samples = samples;
  }
  return &e;
}

SkewEstimator* ClockTable::use(std::string_view device, Nanos now, const std::string* stable_name) {
  Entry* e = find(device, now, stable_name);
  return e == nullptr ? nullptr : &e->estimator.promote(interned_);
}

std::optional<Correction> ClockTable::observe(std::string_view device, Nanos now, Nanos device_time,
                                              Nanos reference_time, TimeReference reference,
                                              const std::string* stable_name) {
  Entry* e = find(device, now, stable_name);
  if (e == nullptr) return std::nullopt;
  DeviceEstimator::Change change;
  const Correction c =
      e->estimator.observe(device_time, reference_time, reference, interned_, change);
  const bool out_before = change.out_before, out_after = change.out_after;
  out_of_bounds_ = out_of_bounds_ - out_before + out_after;
  steps_ += change.steps_after - change.steps_before;
  if (out_before != out_after) {
    if (out_after)
      skewed_.emplace(device);
    else if (auto it = skewed_.find(device); it != skewed_.end())
      skewed_.erase(it);
  }
  return c;
}

void ClockTable::remove(std::uint32_t i) {
  Entry& e = at(i);
  out_of_bounds_ -= e.estimator.outOfBounds();
  steps_ -= e.estimator.steps();
  if (e.estimator.outOfBounds()) skewed_.erase(e.name_.get());
  unlink(i);
  index_.erase(i, e.hash_);
  const std::uint32_t last = size_ - 1;
  if (i != last) {  // the last entry moves into the hole: the array stays dense
    index_.rename(last, i, at(last).hash_);
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
    index_.shrink();
  }
  return n;
}

std::size_t ClockTable::memoryBytes() const {
  std::size_t bytes = sizeof(*this) + chunks_.capacity() * sizeof(chunks_[0]) +
                      chunks_.size() * kChunk * sizeof(Entry) + index_.memoryBytes();
  for (std::uint32_t i = 0; i < size_; ++i) {
    const Entry& e = at(i);
    bytes += e.estimator.heapBytes();
    bytes += e.name_.heapBytes();
  }
  return bytes;
}

std::optional<double> ClockTable::rate(const Entry& e, Nanos now) const {
  // Since the mark when that is at least 1 s ago (a silent device decays towards 0), else
  // the previous interval's rate.
  if (now - e.mark >= kNanosPerSecond)
    return static_cast<double>(static_cast<std::uint32_t>(e.estimator.samples()) - e.mark_samples) *
           kNanosPerSecond / static_cast<double>(now - e.mark);
  if (e.rate >= 0) return e.rate;
  return std::nullopt;
}

void ClockTable::forEach(const std::function<void(const std::string&, const Entry&)>& fn) const {
  for (std::uint32_t i = 0; i < size_; ++i) fn(at(i).name_.get(), at(i));
}

std::size_t ClockTable::forEachIn(
    std::size_t begin, std::size_t end,
    const std::function<void(const std::string&, const Entry&)>& fn) const {
  for (std::size_t i = begin; i < std::min<std::size_t>(end, size_); ++i) {
    const Entry& e = at(static_cast<std::uint32_t>(i));
    fn(e.name_.get(), e);
  }
  return size_;
}

}  // namespace gw::clock
