// The journal's series: each distinct Series once, its SeriesId its position (issue 13:
// per-series memory). The series are kept in a deque, so a `const Series&` stays valid for as
// long as the table lives (records on the sinks' threads point at them), and indexed by value
// with an open-addressing index of their hashes (core/slot_index.h: 8 bytes per slot, grown
// with the table, nothing reserved up front) instead of a node per series.
//
// Threading: intern() and add() on the journal's owner thread; a reference obtained from
// operator[] may be read from any thread.
#pragma once

#include <cstddef>
#include <deque>

#include "core/reading.h"
#include "core/slot_index.h"

namespace gw::buffer {

class SeriesTable {
 public:
  /// `expected_series`: how many series the owner will add at most (sizes the index's growth).
  explicit SeriesTable(std::size_t expected_series);

  /// The id of `series`, added first when it is new (ids are dense: the next one is size()).
  SeriesId intern(const Series& series);
  /// Appends a series read back from the journal: its id is size() before the call.
  SeriesId add(Series series);

  const Series& operator[](std::size_t id) const { return series_[id]; }
  std::size_t size() const { return series_.size(); }
  /// Bytes held: the series (with their strings when longer than inline) and the index.
  std::size_t memoryBytes() const;

 private:
  static std::uint32_t hashOf(const Series& series);

  std::deque<Series> series_;  ///< index = SeriesId; a deque never moves its elements
  SlotIndex index_;            ///< hash of a series -> its id
};

}  // namespace gw::buffer
