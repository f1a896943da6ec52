#include "gateway/clock_table.h"

#include <cassert>
#include <utility>

namespace gw::clock {
namespace {
constexpr Nanos kRateInterval = 10 * kNanosPerSecond;

std::uint32_t hashOf(std::string_view device) {
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(device));
}
}  // namespace

ClockTable::ClockTable(ClockOptions options, std::size_t max_devices, Nanos idle)
    : options_(options),
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

SkewEstimator* ClockTable::use(std::string_view device, Nanos now, const std::string* stable_name) {
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
    e = Entry(options_);
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
    const std::uint64_t samples = e.estimator.samples();
    e.rate = static_cast<float>(static_cast<double>(samples - e.mark_samples) * kNanosPerSecond /
                                static_cast<double>(now - e.mark));
    e.mark = now;
    e.mark_samples = samples;
  }
  return &e.estimator;
}

std::optional<Correction> ClockTable::observe(std::string_view device, Nanos now, Nanos device_time,
                                              Nanos reference_time, TimeReference reference,
                                              const std::string* stable_name) {
  SkewEstimator* e = use(device, now, stable_name);
  if (e == nullptr) return std::nullopt;
  const bool out_before = e->outOfBounds();
  const std::uint32_t steps_before = e->steps();
  const Correction c = e->observe(device_time, reference_time, reference);
  const bool out_after = e->outOfBounds();
  out_of_bounds_ = out_of_bounds_ - out_before + out_after;
  steps_ += e->steps() - steps_before;
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
    return static_cast<double>(e.estimator.state().samples - e.mark_samples) * kNanosPerSecond /
           static_cast<double>(now - e.mark);
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
