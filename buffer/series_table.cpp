#include "buffer/series_table.h"

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

std::uint32_t hashTags(const Tags& tags) {
  std::hash<std::string> h;
  std::size_t v = tags.size();
  for (const auto& [k, t] : tags) v = (v * 31 + h(k)) * 31 + h(t);
  return fold(v);
}

}  // namespace

SeriesTable::SeriesTable(std::size_t expected_series) : index_(expected_series) {}

std::uint32_t SeriesTable::hashOf(const Series& series) { return fold(SeriesHash{}(series)); }

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
  const std::string& metric = metricOf(series.metric);
  const Tags& tags = tagsOf(series.tags);
  std::string device = std::move(series.device);
  if (device.capacity() > device.size() && device.capacity() > std::string().capacity())
    device.shrink_to_fit();
  series_.emplace_back(std::move(device), metric, tags);
  index_.insert(id, hash);
  return id;
}

std::size_t SeriesTable::memoryBytes() const {
  std::size_t bytes = series_.size() * sizeof(InternedSeries) + index_.memoryBytes() +
                      metric_index_.memoryBytes() + tag_index_.memoryBytes() +
                      metrics_.size() * sizeof(std::string) + tag_sets_.size() * sizeof(Tags);
  for (const InternedSeries& s : series_) bytes += heapOf(s.device);
  for (const std::string& m : metrics_) bytes += heapOf(m);
  for (const Tags& t : tag_sets_) {
    bytes += t.capacity() * sizeof(t[0]);
    for (const auto& [k, v] : t) bytes += heapOf(k) + heapOf(v);
  }
  return bytes;
}

}  // namespace gw::buffer
