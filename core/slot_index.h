// An index from a key's hash to a 32-bit id, for per-series tables that keep their entries in
// their own arrays (issue 13): open addressing with linear probing, the hash kept beside the id
// so that growing never touches the entries, backward-shift deletion (no tombstones, so lookups
// stay short after many evictions). 8 bytes per slot, at most 4/5 full.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gw {

class SlotIndex {
 public:
  static constexpr std::uint32_t kNone = UINT32_MAX;

  /// `max_entries`: the most ids the owner will insert (it sizes the growth step below).
  explicit SlotIndex(std::size_t max_entries) : max_(max_entries), slots_(kMinSlots) {}

  /// The id stored with `hash` for which `is_key(id)` holds, or kNone.
  template <class IsKey>
  std::uint32_t find(std::uint32_t hash, IsKey&& is_key) const {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.id == kNone || (s.hash == hash && is_key(s.id))) return s.id;
    }
  }
  /// Adds `id`, whose key is not in the index; grows first when it would pass 4/5 full.
  void insert(std::uint32_t id, std::uint32_t hash) {
    if ((count_ + 1) * 5 > slots_.size() * 4) resize(grownSlots());
    slots_[emptySlot(hash)] = Slot{id, hash};
    ++count_;
  }
  /// Removes `id`, inserted with `hash`.
  void erase(std::uint32_t id, std::uint32_t hash) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t hole = slotOf(id, hash);
    for (std::size_t j = (hole + 1) & mask; slots_[j].id != kNone; j = (j + 1) & mask) {
      const std::size_t home = slots_[j].hash & mask;
      if (((j - home) & mask) >= ((j - hole) & mask)) {  // home is not in (hole, j]
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --count_;
  }
  /// The entry `from` (inserted with `hash`) is now `to`: its owner moved it.
  void rename(std::uint32_t from, std::uint32_t to, std::uint32_t hash) {
    slots_[slotOf(from, hash)].id = to;
  }
  /// Halves the index while it is more than 8 times larger than what it holds, so that memory
  /// goes back after eviction.
  void shrink() {
    std::size_t n = slots_.size();
    while (n > kMinSlots && count_ * 8 < n) n /= 2;
    if (n != slots_.size()) resize(n);
  }

  std::size_t size() const { return count_; }
  std::size_t memoryBytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    std::uint32_t id = kNone;
    std::uint32_t hash = 0;
  };
  static constexpr std::size_t kMinSlots = 16;

  std::size_t emptySlot(std::uint32_t hash) const {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash & mask;
    while (slots_[i].id != kNone) i = (i + 1) & mask;
    return i;
  }
  std::size_t slotOf(std::uint32_t id, std::uint32_t hash) const {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash & mask;
    for (; slots_[i].id != id; i = (i + 1) & mask) assert(slots_[i].id != kNone);
    return i;
  }
  /// Doubling from 16 slots while small (10,000 entries: 16,384 slots, 128 KiB), then, from
  /// 32,768 slots on, straight to what max_entries needs at 4/5 load (at most 2^18 slots,
  /// 2 MiB). That step, at ~13,000 entries, takes 6-11 ms with the allocation (development
  /// VM); the doublings it replaces would rehash 100,000 and 200,000 entries at once (11 and
  /// 25 ms). Past ~209,000 entries the index doubles again (a stall of that size, once).
  std::size_t grownSlots() const {
    const std::size_t want = slots_.size() * 2;
    if (want < 32768) return want;
    const std::size_t target = std::min<std::size_t>(max_, (std::size_t{1} << 18) * 4 / 5);
    std::size_t full = 32768;
    while (full * 4 < target * 5) full *= 2;
    return std::max(want, full);
  }
  void resize(std::size_t n) {
    std::vector<Slot> old(n);
    old.swap(slots_);
    for (const Slot& s : old)
      if (s.id != kNone) slots_[emptySlot(s.hash)] = s;
  }

  std::size_t max_;
  std::vector<Slot> slots_;  ///< a power of two
  std::size_t count_ = 0;
};

}  // namespace gw
