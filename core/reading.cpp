#include "core/reading.h"

#include <functional>

namespace gw {

const char* toString(TimeReference r) { return r == TimeReference::kBroker ? "broker" : "receive"; }

size_t SeriesHash::operator()(const Series& s) const noexcept {
  std::hash<std::string> h;
  size_t v = h(s.device) * 31 + h(s.metric);
  for (const auto& [k, t] : s.tags) v = (v * 31 + h(k)) * 31 + h(t);
  return v;
}

}  // namespace gw
