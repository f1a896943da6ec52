// An index from a key's hash to a 32-bit id, for per-series tables that keep their entries in
// their own arrays (issue 13): open addressing with linear probing, the hash kept beside the id
// so that growing never touches the entries, backward-shift deletion (no tombstones, so lookups
// stay short after many evictions). 8 bytes per slot, at most 4/5 full.
//
// Sized by what it holds, never by a maximum (issue 13: the three indexes sized for max_series
// held 6 MiB at 100,000 series, 3 MiB more than they needed). It doubles, and no step of it
// costs more than a few slots, so that an insert, an erase or a rename never holds the event
// loop (issue 13: the loop's stall ≤ 10 ms):
// - the doubling is incremental (a one-step rehash of 100,000 entries stalled the loop ~11 ms):
//   the new table takes the inserts, each insert moves kMovesPerInsert slots of the old one in
//   order, and lookups look in both until the old one is drained;
// - a large table is mapped, not filled: an empty slot is all zero bits, so a fresh table is
//   the kernel's zero pages, each faulted in when first written (filling a 1 MiB table at once
//   was 6–10 ms of page faults on the loop in a perf profile, three indexes growing at the same
//   series);
// - an erase or a rename while the old table is being drained edits both tables (an erased
//   entry not yet moved leaves a tombstone in the old table only, gone with it) instead of
//   draining it first.
// While small (up to kRehashAtOnce slots) the table is rehashed at once, as before.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

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
    // Not yet moved from the old table?
    if (id == kNone && !old_.empty()) return findIn(old_, hash, is_key);
    return id;
  }
  /// Adds `id` (below kNone - 1), whose key is not in the index; grows first when it would
  /// pass 4/5 full.
  void insert(std::uint32_t id, std::uint32_t hash) {
    assert(id < kNone - 1);
    if ((count_ + 1) * 5 > slots_.size() * 4) grow();
    slots_[emptySlot(slots_, hash)] = Slot{id + 1, hash};
    ++count_;
    if (!old_.empty()) moveSome(kMovesPerInsert);
  }
  /// Removes `id`, inserted with `hash`.
  void erase(std::uint32_t id, std::uint32_t hash) {
    bool found = false;
    if (const std::size_t i = lookup(slots_, id, hash); i != kNoSlot) {
      eraseAt(i);
      found = true;
    }
    // Still in the old table (not moved yet, or the copy a move leaves behind): a tombstone
    // there keeps the probe chains of the entries not moved yet, and the move skips it.
    if (!old_.empty())
      if (const std::size_t i = lookup(old_, id, hash); i != kNoSlot) {
        old_[i].key = kTombstone;
        found = true;
      }
    assert(found);
    if (found) --count_;
  }
  /// The entry `from` (inserted with `hash`) is now `to`: its owner moved it.
  void rename(std::uint32_t from, std::uint32_t to, std::uint32_t hash) {
    assert(to < kNone - 1);
    bool found = false;
    if (const std::size_t i = lookup(slots_, from, hash); i != kNoSlot) {
      slots_[i].key = to + 1;
      found = true;
    }
    if (!old_.empty())
      if (const std::size_t i = lookup(old_, from, hash); i != kNoSlot) {
        old_[i].key = to + 1;
        found = true;
      }
    assert(found);
    (void)found;
  }
  /// Halves the index while it is more than 8 times larger than what it holds, so that memory
  /// goes back after eviction. Not while growing (it holds more than 2/5 of its slots then):
  /// a later call shrinks it.
  void shrink() {
    if (!old_.empty()) return;
    std::size_t n = slots_.size();
    while (n > kMinSlots && count_ * 8 < n) n /= 2;
    if (n != slots_.size()) rehash(n);
  }

  std::size_t size() const { return count_; }
  /// Slots of the table in use (a power of two), not counting one being drained.
  std::size_t slotCount() const { return slots_.size(); }
  /// True while an old table is still being moved into the new one.
  bool growing() const { return !old_.empty(); }
  std::size_t memoryBytes() const { return (slots_.size() + old_.size()) * sizeof(Slot); }

  static constexpr std::size_t kRehashAtOnce = 8192;
  /// Enough to drain the old table (n slots) before the new one (2n, holding at most 0.8n + the
  /// inserts since) is 4/5 full: n / kMovesPerInsert inserts ≤ 0.8n.
  static constexpr std::size_t kMovesPerInsert = 4;
  /// Tables of at least this many bytes are mapped (zero pages, faulted in when written), not
  /// taken from the heap and filled.
  static constexpr std::size_t kMapBytes = 128 * 1024;

 private:
  /// `key` is the id + 1: a slot of zero bits is empty (a fresh mapping is an empty table).
  struct Slot {
    std::uint32_t key = 0;
    std::uint32_t hash = 0;
  };
  static constexpr std::uint32_t kTombstone = UINT32_MAX;  ///< erased; in the old table only
  static constexpr std::size_t kMinSlots = 16;
  static constexpr std::size_t kNoSlot = SIZE_MAX;

  /// A power-of-two array of empty slots that never fills them: calloc, or mmap when large.
  class Table {
   public:
    Table() = default;
    explicit Table(std::size_t n) : n_(n) {
      const std::size_t bytes = n * sizeof(Slot);
      void* p = nullptr;
      if (bytes >= kMapBytes) {
        p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        mapped_ = true;
      } else {
        p = std::calloc(n, sizeof(Slot));
        if (!p) throw std::bad_alloc();
      }
      p_ = static_cast<Slot*>(p);
    }
    Table(Table&& o) noexcept
        : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), mapped_(o.mapped_) {}
    Table& operator=(Table&& o) noexcept {
      if (this != &o) {
        release();
        p_ = std::exchange(o.p_, nullptr);
        n_ = std::exchange(o.n_, 0);
        mapped_ = o.mapped_;
      }
      return *this;
    }
    Table(const Table&) = delete;
    Table& operator=(const Table&) = delete;
    ~Table() { release(); }

    std::size_t size() const { return n_; }
    bool empty() const { return n_ == 0; }
    Slot& operator[](std::size_t i) { return p_[i]; }
    const Slot& operator[](std::size_t i) const { return p_[i]; }

   private:
    void release() {
      if (!p_) return;
      if (mapped_)
        ::munmap(p_, n_ * sizeof(Slot));
      else
        std::free(p_);
      p_ = nullptr;
      n_ = 0;
    }
    Slot* p_ = nullptr;
    std::size_t n_ = 0;
    bool mapped_ = false;
  };

  template <class IsKey>
  static std::uint32_t findIn(const Table& slots, std::uint32_t hash, IsKey& is_key) {
    const std::size_t mask = slots.size() - 1;
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.key == 0) return kNone;
      if (s.key != kTombstone && s.hash == hash && is_key(s.key - 1)) return s.key - 1;
    }
  }
  static std::size_t emptySlot(const Table& slots, std::uint32_t hash) {
    const std::size_t mask = slots.size() - 1;
    std::size_t i = hash & mask;
    while (slots[i].key != 0) i = (i + 1) & mask;
    return i;
  }
  /// Where `id` (of `hash`) is in `slots`, or kNoSlot.
  static std::size_t lookup(const Table& slots, std::uint32_t id, std::uint32_t hash) {
    const std::size_t mask = slots.size() - 1;
    for (std::size_t i = hash & mask; slots[i].key != 0; i = (i + 1) & mask)
      if (slots[i].key == id + 1) return i;
    return kNoSlot;
  }
  /// Backward-shift deletion in the table that takes the inserts.
  void eraseAt(std::size_t hole) {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t j = (hole + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
      const std::size_t home = slots_[j].hash & mask;
      if (((j - home) & mask) >= ((j - hole) & mask)) {  // home is not in (hole, j]
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
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
    old_ = std::move(slots_);
    slots_ = Table(n);
    moved_ = 0;
  }
  /// Moves up to `n` slots of the old table into the new one, in order (slot i of the old
  /// table lands near slot i or i + n of the new one: a few new pages per thousand moves);
  /// frees it once all are moved.
  void moveSome(std::size_t n) {
    const std::size_t end = std::min(old_.size(), moved_ + n);
    for (; moved_ < end; ++moved_) {
      const Slot& s = old_[moved_];
      if (s.key != 0 && s.key != kTombstone) slots_[emptySlot(slots_, s.hash)] = s;
    }
    if (moved_ == old_.size()) old_ = Table();
  }
  void drain() {
    if (!old_.empty()) moveSome(old_.size());
  }
  void rehash(std::size_t n) {
    Table old(n);
    std::swap(old, slots_);
    for (std::size_t i = 0; i < old.size(); ++i)
      if (old[i].key != 0) slots_[emptySlot(slots_, old[i].hash)] = old[i];
  }

  Table slots_;            ///< a power of two; where inserts go
  Table old_;              ///< the table before the last doubling, until moved (or empty)
  std::size_t moved_ = 0;  ///< old_ slots [0, moved_) are in slots_ (and still in old_)
  std::size_t count_ = 0;
};

}  // namespace gw
