#include "buffer/series_table.h"

#include <cstdlib>
#include <limits>
#include <string>
#include <utility>

#include "core/log.h"

namespace gw::buffer {

SeriesTable::SeriesTable(std::size_t expected_series) : index_(expected_series) {}

std::uint32_t SeriesTable::hashOf(const Series& series) {
  const std::size_t h = SeriesHash{}(series);
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

SeriesId SeriesTable::intern(const Series& series) {
  const std::uint32_t hash = hashOf(series);
  const std::uint32_t found =
      index_.find(hash, [&](std::uint32_t id) { return series_[id] == series; });
  if (found != SlotIndex::kNone) return found;
  return add(series);
}

SeriesId SeriesTable::add(Series series) {
  // SlotIndex::kNone (UINT32_MAX) is not an id.
  if (series_.size() >= std::numeric_limits<SeriesId>::max()) {
    log::error("journal: bug: series id space exhausted");
    std::abort();
  }
  const auto id = static_cast<SeriesId>(series_.size());
  const std::uint32_t hash = hashOf(series);
  series_.push_back(std::move(series));
  index_.insert(id, hash);
  return id;
}

std::size_t SeriesTable::memoryBytes() const {
  std::size_t bytes = series_.size() * sizeof(Series) + index_.memoryBytes();
  const auto heap = [](const std::string& s) {
    return s.capacity() > std::string().capacity() ? s.capacity() + 1 : 0;
  };
  for (const Series& s : series_) {
    bytes += heap(s.device) + heap(s.metric) + s.tags.capacity() * sizeof(s.tags[0]);
    for (const auto& [k, v] : s.tags) bytes += heap(k) + heap(v);
  }
  return bytes;
}

}  // namespace gw::buffer
