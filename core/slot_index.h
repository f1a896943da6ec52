// An index from a key's hash to a 32-bit id, for per-series tables that keep their entries in
// their own arrays (issue 13): open addressing with linear probing, the hash kept beside the id
// so that growing never touches the entries, backward-shift deletion (no tombstones, so lookups
// stay short after many evictions). 8 bytes per slot, at most 4/5 full.
//
// Sized by what it holds, never by a maximum (issue 13: the three indexes sized for max_series
// held 6 MiB at 100,000 series, 3 MiB more than they needed). It doubles, and the doubling is
// incremental so that no insert rehashes a large table at once (a one-step rehash of 100,000
// entries stalled the loop ~11 ms): the new table takes the inserts, each insert moves
// kMovesPerInsert slots of the old one, and lookups look in both until the old one is drained.
// While small (up to kRehashAtOnce slots) the old table is rehashed at once, as before.
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

  SlotIndex() : slots_(kMinSlots) {}
  /// `max_entries` is no longer used (the index grows with what it holds); kept so that the
  /// owners' constructors read the same.
  explicit SlotIndex(std::size_t /*max_entries*/) : SlotIndex() {}

  /// The id stored with `hash` for which `is_key(id)` holds, or kNone.
  template <class IsKey>
  std::uint32_t find(std::uint32_t hash, IsKey&& is_key) const {
    const std::uint32_t id = findIn(slots_, hash, is_key);
    // Not yet moved from the old table? (Nothing is erased while moving: erase() drains it.)
    if (id == kNone && !old_.empty()) return findIn(old_, hash, is_key);
    return id;
  }
  /// Adds `id`, whose key is not in the index; grows first when it would pass 4/5 full.
  void insert(std::uint32_t id, std::uint32_t hash) {
    if ((count_ + 1) * 5 > slots_.size() * 4) grow();
    slots_[emptySlot(slots_, hash)] = Slot{id, hash};
    ++count_;
    if (!old_.empty()) moveSome(kMovesPerInsert);
  }
  /// Removes `id`, inserted with `hash`.
  void erase(std::uint32_t id, std::uint32_t hash) {
    drain();
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
    drain();
    slots_[slotOf(from, hash)].id = to;
  }
  /// Halves the index while it is more than 8 times larger than what it holds, so that memory
  /// goes back after eviction.
  void shrink() {
    drain();
    std::size_t n = slots_.size();
    while (n > kMinSlots && count_ * 8 < n) n /= 2;
    if (n != slots_.size()) rehash(n);
  }

  std::size_t size() const { return count_; }
  /// Slots of the table in use (a power of two), not counting one being drained.
  std::size_t slotCount() const { return slots_.size(); }
  /// True while an old table is still being moved into the new one.
  bool growing() const { return !old_.empty(); }
  std::size_t memoryBytes() const { return (slots_.capacity() + old_.capacity()) * sizeof(Slot); }

  static constexpr std::size_t kRehashAtOnce = 8192;
  /// Enough to drain the old table (n slots) before the new one (2n, holding at most 0.8n + the
  /// inserts since) is 4/5 full: n / kMovesPerInsert inserts ≤ 0.8n.
  static constexpr std::size_t kMovesPerInsert = 4;

 private:
  struct Slot {
    std::uint32_t id = kNone;
    std::uint32_t hash = 0;
  };
  static constexpr std::size_t kMinSlots = 16;

  template <class IsKey>
  static std::uint32_t findIn(const std::vector<Slot>& slots, std::uint32_t hash, IsKey& is_key) {
    const std::size_t mask = slots.size() - 1;
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.id == kNone || (s.hash == hash && is_key(s.id))) return s.id;
    }
  }
  static std::size_t emptySlot(const std::vector<Slot>& slots, std::uint32_t hash) {
    const std::size_t mask = slots.size() - 1;
    std::size_t i = hash & mask;
    while (slots[i].id != kNone) i = (i + 1) & mask;
    return i;
  }
  std::size_t slotOf(std::uint32_t id, std::uint32_t hash) const {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash & mask;
    for (; slots_[i].id != id; i = (i + 1) & mask) assert(slots_[i].id != kNone);
    return i;
  }
  void grow() {
    drain();  // (not reached while growing: the old table is drained long before; see above)
    const std::size_t n = slots_.size() * 2;
    if (slots_.size() <= kRehashAtOnce) {
      rehash(n);
      return;
    }
    // The old slots stay as they are (probe chains intact) until moved; the new table takes
    // the inserts from now on.
    old_.swap(slots_);
    slots_.assign(n, Slot{});
    moved_ = 0;
  }
  /// Moves up to `n` slots of the old table into the new one; frees it once all are moved.
  void moveSome(std::size_t n) {
    const std::size_t end = std::min(old_.size(), moved_ + n);
    for (; moved_ < end; ++moved_) {
      const Slot& s = old_[moved_];
      if (s.id != kNone) slots_[emptySlot(slots_, s.hash)] = s;
    }
    if (moved_ == old_.size()) std::vector<Slot>().swap(old_);
  }
  void drain() {
    if (!old_.empty()) moveSome(old_.size());
  }
  void rehash(std::size_t n) {
    std::vector<Slot> old(n);
    old.swap(slots_);
    for (const Slot& s : old)
      if (s.id != kNone) slots_[emptySlot(slots_, s.hash)] = s;
  }

  std::vector<Slot> slots_;  ///< a power of two; where inserts go
  std::vector<Slot> old_;    ///< the table before the last doubling, until moved (or empty)
  std::size_t moved_ = 0;    ///< old_ slots [0, moved_) are in slots_ (and still in old_)
  std::size_t count_ = 0;
};

}  // namespace gw
