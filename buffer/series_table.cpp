#include "buffer/series_table.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <utility>

#include "core/log.h"

namespace gw::buffer {
namespace {

std::uint32_t fold(std::size_t h) { return static_cast<std::uint32_t>(h ^ (h >> 32)); }

std::size_t heapOf(const std::string& s) {
  return s.capacity() > std::string().capacity() ? s.capacity() + 1 : 0;
}

std::size_t heapOf(const Tags& t) {
  std::size_t bytes = t.capacity() * sizeof(t[0]);
  for (const auto& [k, v] : t) bytes += heapOf(k) + heapOf(v);
  return bytes;
}

std::uint32_t hashTags(const Tags& tags) {
  std::hash<std::string> h;
  std::size_t v = tags.size();
  for (const auto& [k, t] : tags) v = (v * 31 + h(k)) * 31 + h(t);
  return fold(v);
}

[[noreturn]] void bug(const char* what) {
  log::error("journal: bug: {}", what);
  std::abort();
}

}  // namespace

SeriesTable::SeriesTable(std::size_t expected_series, std::size_t pinned, std::size_t cache)
    : pinned_(pinned), capacity_(std::max<std::size_t>(cache, 1)), index_(expected_series) {}

std::uint32_t SeriesTable::hashOf(const Series& series) { return fold(SeriesHash{}(series)); }

std::uint32_t SeriesTable::hashOfId(SeriesId id) {
  return fold(static_cast<std::size_t>(id) * 0x9E3779B97F4A7C15ull);
}

const std::string& SeriesTable::metricOf(const std::string& metric) {
  const std::uint32_t hash = fold(std::hash<std::string>{}(metric));
  const std::uint32_t found =
      metric_index_.find(hash, [&](std::uint32_t i) { return metrics_[i] == metric; });
  if (found != SlotIndex::kNone) return metrics_[found];
  metric_index_.insert(static_cast<std::uint32_t>(metrics_.size()), hash);
  return metrics_.emplace_back(metric);
}

const Tags& SeriesTable::tagsOf(const Tags& tags) {
  const std::uint32_t hash = hashTags(tags);
  const std::uint32_t found =
      tag_index_.find(hash, [&](std::uint32_t i) { return tag_sets_[i] == tags; });
  if (found != SlotIndex::kNone) return tag_sets_[found];
  tag_index_.insert(static_cast<std::uint32_t>(tag_sets_.size()), hash);
  Tags& kept = tag_sets_.emplace_back(tags);
  kept.shrink_to_fit();
  return kept;
}

SeriesId SeriesTable::find(const Series& series) {
  const std::uint32_t hash = hashOf(series);
  if (!pinned_series_.empty()) {
    const std::uint32_t found =
        index_.find(hash, [&](std::uint32_t id) { return pinned_series_[id] == series; });
    if (found != SlotIndex::kNone) return found;
  }
  if (cached_ == 0) return kNoId;
  const std::uint32_t slot =
      cache_index_.find(hash, [&](std::uint32_t i) { return slots_[i].series == series; });
  if (slot == SlotIndex::kNone) return kNoId;
  Slot& s = slots_[slot];
  s.used = true;
  s.call = call_;
  return s.id;
}

SeriesId SeriesTable::intern(const Series& series) {
  const SeriesId found = find(series);
  if (found != kNoId) return found;
  if (incomplete_) bug("series table: intern() on a table that evicted");
  return add(series);
}

SeriesId SeriesTable::add(Series series) {
  // SlotIndex::kNone (UINT32_MAX) is not an id.
  if (size_ >= kNoId) bug("series id space exhausted");
  const auto id = static_cast<SeriesId>(size_);
  if (id < pinned_)
    addPinned(std::move(series), id);
  else
    cache(std::move(series), id);
  ++size_;
  return id;
}

void SeriesTable::addPinned(Series series, SeriesId id) {
  const std::uint32_t hash = hashOf(series);
  const std::string& metric = metricOf(series.metric);
  const Tags& tags = tagsOf(series.tags);
  std::string device = std::move(series.device);
  if (device.capacity() > device.size() && device.capacity() > std::string().capacity())
    device.shrink_to_fit();
  pinned_series_.emplace_back(std::move(device), metric, tags);
  index_.insert(id, hash);
}

void SeriesTable::skipTo(std::size_t n) {
  if (n <= size_ || cached_ > 0 || size_ < std::min(pinned_, n)) bug("series table: skipTo()");
  if (n >= kNoId) bug("series id space exhausted");
  size_ = n;
  incomplete_ = true;
}

const InternedSeries& SeriesTable::load(SeriesId id, Series series) {
  if (id < pinned_ || id >= size_ || slotOf(id) != SlotIndex::kNone)
    bug("series table: load() of an id in memory or unknown");
  return cache(std::move(series), id);
}

const InternedSeries* SeriesTable::get(SeriesId id, std::uint64_t seq) {
  if (id < pinned_) return id < pinned_series_.size() ? &pinned_series_[id] : nullptr;
  const std::uint32_t slot = slotOf(id);
  if (slot == SlotIndex::kNone) return nullptr;
  Slot& s = slots_[slot];
  s.used = true;
  s.call = call_;
  if (reader_ != kNoReader) s.held[reader_] = std::max(s.held[reader_], seq);
  return &s.series;
}

std::uint32_t SeriesTable::slotOf(SeriesId id) const {
  if (cached_ == 0) return SlotIndex::kNone;
  return id_index_.find(hashOfId(id), [&](std::uint32_t i) { return slots_[i].id == id; });
}

namespace {

// The filter's three bit positions of a name (double hashing; kFilterBits a power of two).
template <class Fn>
void filterBits(std::size_t hash, Fn&& fn) {
  std::uint64_t h2 = (static_cast<std::uint64_t>(hash) ^ (hash >> 29)) * 0xBF58476D1CE4E5B9ull;
  h2 = (h2 ^ (h2 >> 32)) | 1;
  for (std::uint64_t i = 0; i < 3; ++i)
    fn((static_cast<std::uint64_t>(hash) + i * h2) & (SeriesTable::kFilterBits - 1));
}

}  // namespace

void SeriesTable::note(std::size_t hash) {
  if (filter_.empty()) filter_.assign(kFilterBits / 64, 0);
  filterBits(hash, [&](std::uint64_t b) { filter_[b / 64] |= std::uint64_t{1} << (b % 64); });
}

bool SeriesTable::mayHaveId(const Series& series) const {
  if (filter_.empty()) return false;
  bool all = true;
  filterBits(SeriesHash{}(series),
             [&](std::uint64_t b) { all = all && (filter_[b / 64] >> (b % 64) & 1) != 0; });
  return all;
}

const InternedSeries& SeriesTable::cache(Series&& series, SeriesId id) {
  note(SeriesHash{}(series));
  const std::uint32_t hash = hashOf(series);
  const std::uint32_t slot = takeSlot();
  Slot& s = slots_[slot];
  s.series.device = std::move(series.device);
  s.metric = std::move(series.metric);
  s.tags = std::move(series.tags);
  s.held.fill(0);
  s.call = call_;
  s.id = id;
  s.hash = hash;
  s.used = false;  // behind the hand: the last the hand looks at again
  cache_index_.insert(slot, hash);
  id_index_.insert(slot, hashOfId(id));
  ++cached_;
  return s.series;
}

std::uint32_t SeriesTable::takeSlot() {
  // At capacity one eviction makes room; past it (the cache grew while nothing was safe to
  // evict) one more per insert, so that it shrinks back.
  for (int i = 0; i < 2 && cached_ + 1 > capacity_; ++i) {
    const std::uint32_t freed = evictOne();
    if (freed == SlotIndex::kNone) break;
    free_slots_.push_back(freed);
  }
  if (free_slots_.empty()) {
    if (slots_.size() >= kNoId) bug("series cache slots exhausted");
    slots_.emplace_back();
    return static_cast<std::uint32_t>(slots_.size() - 1);
  }
  const std::uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  // A slot left free (the cache shrinking back) gives its strings' memory back.
  if (!free_slots_.empty()) {
    Slot& left = slots_[free_slots_.back()];
    std::string().swap(left.series.device);
    std::string().swap(left.metric);
    Tags().swap(left.tags);
    cache_index_.shrink();
    id_index_.shrink();
  }
  return slot;
}

std::uint32_t SeriesTable::evictOne() {
  const std::size_t n = slots_.size();
  std::uint32_t second = SlotIndex::kNone;  // the first safe one that had been used
  for (std::size_t i = 0; i < std::min(kScanSlots, n); ++i) {
    if (hand_ >= n) hand_ = 0;
    const auto at = static_cast<std::uint32_t>(hand_++);
    Slot& s = slots_[at];
    if (!evictable(s)) continue;
    if (s.used) {
      s.used = false;  // a second chance
      if (second == SlotIndex::kNone) second = at;
      continue;
    }
    evict(at);
    return at;
  }
  if (second != SlotIndex::kNone) evict(second);
  return second;
}

void SeriesTable::evict(std::uint32_t slot) {
  Slot& s = slots_[slot];
  assert(s.id != kNoId);
  cache_index_.erase(slot, s.hash);
  id_index_.erase(slot, hashOfId(s.id));
  s.id = kNoId;
  --cached_;
  ++evictions_;
  incomplete_ = true;
}

std::size_t SeriesTable::memoryBytes() const {
  std::size_t bytes = pinned_series_.size() * sizeof(InternedSeries) + index_.memoryBytes() +
                      metric_index_.memoryBytes() + tag_index_.memoryBytes() +
                      metrics_.size() * sizeof(std::string) + tag_sets_.size() * sizeof(Tags);
  for (const InternedSeries& s : pinned_series_) bytes += heapOf(s.device);
  for (const std::string& m : metrics_) bytes += heapOf(m);
  for (const Tags& t : tag_sets_) bytes += heapOf(t);
  bytes += slots_.size() * sizeof(Slot) + free_slots_.capacity() * sizeof(std::uint32_t) +
           cache_index_.memoryBytes() + id_index_.memoryBytes() +
           filter_.capacity() * sizeof(std::uint64_t);
  for (const Slot& s : slots_) bytes += heapOf(s.series.device) + heapOf(s.metric) + heapOf(s.tags);
  return bytes;
}

}  // namespace gw::buffer
