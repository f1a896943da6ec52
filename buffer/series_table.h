// The journal's series in memory: each distinct Series once, its SeriesId dense and stable
// (issue 13: per-series memory). Two parts:
//
// - Pinned: the first `pinned` ids (JournalOptions::pinned_series, the gateway's
//   [limits] max_series), kept for the table's life, as before: an InternedSeries
//   (core/reading.h) with its own device name and its metric and tag set as references to one
//   copy each, shared by every pinned series that has them. Everything with per-series state
//   (windows, clock table, alert engine) keeps pointers into these; they never move or change.
// - Cached: ids from `pinned` on (a device inventing names) are held in a bounded cache of
//   `cache` entries. An entry owns its device, metric and tags (invented metric names must not
//   grow the shared copies), keeps its address while cached, and is evicted only when the
//   owner says it is safe (setEvictable(): its series row is written, and no record a read
//   handed out with it can still be held). The SQLite series table (buffer/journal_schema.cpp)
//   is the authority for the rest: the owner looks a miss up there and brings it back with
//   load(). Slots are reused; the indexes (by value, by id) hold only what is cached.
//
// Eviction is a clock (second chance): a cached entry used since the hand last passed gets
// passed once more; the hand looks at kScanSlots slots per insert at most, and takes the first
// safe one when every safe one was used. When none of them is safe (a sink holds its records,
// rows not yet committed) the cache grows past `cache`, and shrinks back by evicting one more
// entry per insert while it is over: memory follows what is in use, never the names ever seen.
//
// Threading: every call on the journal's owner thread; an InternedSeries obtained from it may be
// read from any thread while it stays valid (pinned: the table's life; cached: see above).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include "core/reading.h"
#include "core/slot_index.h"

namespace gw::buffer {

class SeriesTable {
 public:
  static constexpr SeriesId kNoId = std::numeric_limits<SeriesId>::max();
  static constexpr std::size_t kAllPinned = std::numeric_limits<std::size_t>::max();
  /// 16,384 entries of ~195 bytes with short names (slot, strings, two index slots): ~3 MiB,
  /// against ~21 MiB for 200,000 pinned series. At 50,000 new names/s this is ~0.3 s of them:
  /// more than the time a sink takes to read what was just appended (a group commit, 50 ms), so
  /// the sinks find the entries they read still cached.
  static constexpr std::size_t kDefaultCacheEntries = 16384;
  /// Slots the clock hand looks at per insert, at most, before the cache grows instead.
  static constexpr std::size_t kScanSlots = 32;
  /// Bits of the filter of names with an id past the pinned ones (1 MiB, made with the first
  /// such id): a new name that the filter has never seen needs no SQLite lookup, which costs
  /// ~4 us, most of it SQLite's file locking for the read (fcntl). Three bits per name: at
  /// 1,000,000 such names 1.5 % of new names are looked up for nothing, at 5,000,000 most.
  static constexpr std::size_t kFilterBits = std::size_t{1} << 23;
  /// Readers that hold records past their call (the sinks' forwarders) each have a slot of an
  /// entry's held seqs, so that a reader that stops confirming keeps only what it read (issue
  /// 13: one sink down must not keep every name the others read). Readers from kReaderSlots - 1
  /// on share the last slot: among them, the lowest cursor bounds what any of them read.
  static constexpr std::size_t kReaderSlots = 4;
  /// A reader that holds nothing past its call (beginCall()).
  static constexpr std::uint32_t kNoReader = std::numeric_limits<std::uint32_t>::max();
  /// Per reader slot: the seq through which that reader has confirmed what it read.
  using HeldUpto = std::array<std::uint64_t, kReaderSlots>;

  /// `expected_series`: no longer used (the index grows with what it holds). Ids below `pinned`
  /// are kept for the table's life; from `pinned` on, `cache` entries (at least 1) are kept.
  explicit SeriesTable(std::size_t expected_series, std::size_t pinned = kAllPinned,
                       std::size_t cache = kDefaultCacheEntries);
  SeriesTable(const SeriesTable&) = delete;
  SeriesTable& operator=(const SeriesTable&) = delete;

  /// The id of `series` when it is in memory (pinned or cached), else kNoId. A cached entry
  /// found is marked as used.
  SeriesId find(const Series& series);
  /// False when `series` certainly has no id past the pinned ones (never added, loaded or
  /// noted): then a miss in memory is a new series, with no SQLite lookup.
  bool mayHaveId(const Series& series) const;
  /// Notes a name that has an id past the pinned ones but is not in memory (at open).
  void noteName(const Series& series) { note(SeriesHash{}(series)); }
  /// The id of `series`, added first when not in memory. Only for a table that has never
  /// evicted (ids are then all in memory): the journal looks evicted series up in SQLite first.
  SeriesId intern(const Series& series);
  /// Adds a new series: its id is size() before the call (pinned or cached by that id).
  SeriesId add(Series series);
  /// Ids from here on exist (the series rows of a journal opened) but are not in memory:
  /// size() becomes `n` (> size()). Only while nothing is cached.
  void skipTo(std::size_t n);
  /// An evicted id (≥ pinned(), < size()) read back from the series table, into the cache.
  const InternedSeries& load(SeriesId id, Series series);

  /// The series of `id` if in memory, else nullptr (an id ≥ pinned() that was evicted). A cached
  /// entry is marked as used by the current call (see beginCall()) and, when the call has a
  /// reader, as handed out to it with a record of `seq`.
  const InternedSeries* get(SeriesId id, std::uint64_t seq = 0);
  /// Pinned ids only (or any id, in a table that never evicts).
  const InternedSeries& operator[](std::size_t id) const { return pinned_series_[id]; }

  /// A new call of the owner begins: entries used by the previous one may be evicted again (an
  /// entry used in the current call never is, so the records a read returns stay valid).
  /// `reader` (0, 1, …; kNoReader: none) reads records it holds past the call: get() notes the
  /// seqs handed out to it, per reader slot.
  void beginCall(std::uint32_t reader = kNoReader) {
    ++call_;
    reader_ = reader == kNoReader ? kNoReader : std::min<std::uint32_t>(reader, kReaderSlots - 1);
  }
  /// What may be evicted from now on: entries of ids below `persisted` (their series row is in
  /// SQLite) whose records handed out to the readers of slot k all have seqs ≤ held_upto[k].
  void setEvictable(const HeldUpto& held_upto, std::size_t persisted) {
    held_upto_ = held_upto;
    persisted_ = persisted;
  }
  /// The same bound for every reader slot.
  void setEvictable(std::uint64_t held_upto, std::size_t persisted) {
    HeldUpto all;
    all.fill(held_upto);
    setEvictable(all, persisted);
  }

  /// Ids given out (pinned, cached or evicted): the next new id.
  std::size_t size() const { return size_; }
  std::size_t pinned() const { return pinned_; }
  bool isPinned(SeriesId id) const { return id < pinned_; }
  /// True when some id ≥ pinned() is not in memory (evicted, or never loaded at open): a miss
  /// in memory must then be looked up in SQLite.
  bool incomplete() const { return incomplete_; }
  /// Cached entries, the slots they use (≥ cachedCount(), > capacity only while it grew), the
  /// evictions so far.
  std::size_t cachedCount() const { return cached_; }
  std::size_t cacheSlots() const { return slots_.size(); }
  std::size_t cacheCapacity() const { return capacity_; }
  std::uint64_t evictions() const { return evictions_; }
  /// Calls fn(id, series) for every cached entry.
  template <class Fn>
  void forEachCached(Fn&& fn) const {
    for (const Slot& s : slots_)
      if (s.id != kNoId) fn(s.id, s.series);
  }
  /// Distinct metrics and tag sets kept for the pinned series (each once).
  std::size_t metricCount() const { return metrics_.size(); }
  std::size_t tagSetCount() const { return tag_sets_.size(); }
  /// Bytes held: the pinned series (with their device names when longer than inline), the
  /// shared metrics and tag sets, the cache's slots with what they own, and the indexes.
  std::size_t memoryBytes() const;

 private:
  /// A cached entry: `series` refers to the slot's own metric and tags, so a slot is built in
  /// place once and reused for other ids (its strings keep their capacity).
  struct Slot {
    Slot() = default;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    std::string metric;
    Tags tags;
    InternedSeries series{std::string(), metric, tags};
    HeldUpto held{};         ///< per reader slot: highest seq of a record handed out with it
    std::uint64_t call = 0;  ///< the owner's call that last used it
    SeriesId id = kNoId;     ///< kNoId: free
    std::uint32_t hash = 0;  ///< of the series
    bool used = false;       ///< used since the hand last passed (second chance)
  };

  static std::uint32_t hashOf(const Series& series);
  static std::uint32_t hashOfId(SeriesId id);
  /// The shared copy of `metric` / `tags`, made when new (pinned series only).
  const std::string& metricOf(const std::string& metric);
  const Tags& tagsOf(const Tags& tags);
  void addPinned(Series series, SeriesId id);
  /// A free slot for a new cached entry, evicting when at capacity.
  std::uint32_t takeSlot();
  bool evictable(const Slot& s) const {
    if (s.id == kNoId || s.id >= persisted_ || s.call == call_) return false;
    for (std::size_t k = 0; k < kReaderSlots; ++k)
      if (s.held[k] > held_upto_[k]) return false;
    return true;
  }
  /// Moves the hand up to kScanSlots slots on and evicts one safe entry there; kNoId if none.
  std::uint32_t evictOne();
  void evict(std::uint32_t slot);
  std::uint32_t slotOf(SeriesId id) const;
  void note(std::size_t hash);
  const InternedSeries& cache(Series&& series, SeriesId id);

  const std::size_t pinned_;
  const std::size_t capacity_;
  std::size_t size_ = 0;
  bool incomplete_ = false;

  std::deque<InternedSeries> pinned_series_;  ///< index = SeriesId; never moves its elements
  SlotIndex index_;                           ///< hash of a pinned series -> its id
  std::deque<std::string> metrics_;
  SlotIndex metric_index_;  ///< hash of a metric -> its position in metrics_
  std::deque<Tags> tag_sets_;
  SlotIndex tag_index_;  ///< hash of a tag set -> its position in tag_sets_

  std::deque<Slot> slots_;  ///< the cache; a deque never moves its elements
  std::vector<std::uint32_t> free_slots_;
  SlotIndex cache_index_;  ///< hash of a cached series -> its slot
  SlotIndex id_index_;     ///< hash of a cached id -> its slot
  std::size_t cached_ = 0;
  std::size_t hand_ = 0;
  std::uint64_t call_ = 1;
  std::uint32_t reader_ = kNoReader;  ///< of the current call: a slot, or kNoReader
  HeldUpto held_upto_{};
  std::size_t persisted_ = 0;
  std::uint64_t evictions_ = 0;
  std::vector<std::uint64_t> filter_;  ///< kFilterBits, or empty (no id past the pinned ones)
};

}  // namespace gw::buffer
