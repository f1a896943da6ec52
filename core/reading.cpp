#include "core/reading.h"

#include <functional>

namespace gw {

const char* toString(TimeReference r) { return r == TimeReference::kBroker ? "broker" : "receive"; }

namespace {

size_t hashOf(const std::string& device, const std::string& metric, const Tags& tags) {
  std::hash<std::string> h;
  size_t v = h(device) * 31 + h(metric);
  for (const auto& [k, t] : tags) v = (v * 31 + h(k)) * 31 + h(t);
  return v;
}

}  // namespace

size_t SeriesHash::operator()(const Series& s) const noexcept {
  return hashOf(s.device, s.metric, s.tags);
}

size_t SeriesHash::operator()(const InternedSeries& s) const noexcept {
  return hashOf(s.device, s.metric, s.tags);
}

bool operator==(const InternedSeries& a, const Series& b) {
  return a.device == b.device && a.metric == b.metric && a.tags == b.tags;
}

bool operator==(const InternedSeries& a, const InternedSeries& b) {
  // The same table's entries share metric and tag set: compare those by address first.
  return &a == &b || (a.device == b.device && (&a.metric == &b.metric || a.metric == b.metric) &&
                      (&a.tags == &b.tags || a.tags == b.tags));
}

}  // namespace gw
