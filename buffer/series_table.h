// The journal's series: each distinct Series once, its SeriesId its position (issue 13:
// per-series memory). A series is kept as an InternedSeries (core/reading.h): its own device
// name, and its metric and tag set as references to one copy each, shared by every series that
// has them (a plant's series have a handful of metrics and tag sets, so a series costs its
// 48 bytes, not a Series' 88 plus a tag vector on the heap). Everything is kept in deques, so a
// `const InternedSeries&` (and the metric and tags it refers to) stays valid for as long as the
// table lives (records on the sinks' threads point at them). Series, metrics and tag sets are
// indexed by value with open-addressing indexes of their hashes (core/slot_index.h).
//
// Threading: intern() and add() on the journal's owner thread; a reference obtained from
// operator[] may be read from any thread.
#pragma once

#include <cstddef>
#include <deque>
#include <string>

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

  const InternedSeries& operator[](std::size_t id) const { return series_[id]; }
  std::size_t size() const { return series_.size(); }
  /// Distinct metrics and tag sets kept (each once, whatever the number of series).
  std::size_t metricCount() const { return metrics_.size(); }
  std::size_t tagSetCount() const { return tag_sets_.size(); }
  /// Bytes held: the series (with their device names when longer than inline), the shared
  /// metrics and tag sets, and the indexes.
  std::size_t memoryBytes() const;

 private:
  static std::uint32_t hashOf(const Series& series);
  /// The shared copy of `metric` / `tags`, made when new.
  const std::string& metricOf(const std::string& metric);
  const Tags& tagsOf(const Tags& tags);

  std::deque<InternedSeries> series_;  ///< index = SeriesId; a deque never moves its elements
  SlotIndex index_;                    ///< hash of a series -> its id
  std::deque<std::string> metrics_;
  SlotIndex metric_index_;  ///< hash of a metric -> its position in metrics_
  std::deque<Tags> tag_sets_;
  SlotIndex tag_index_;  ///< hash of a tag set -> its position in tag_sets_
};

}  // namespace gw::buffer
