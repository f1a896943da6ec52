// doctest output for the alert types, so failed CHECKs show values rather than "{?}".
#pragma once

#include <ostream>
#include <string>

#include "alerts/alert_event.h"
#include "alerts/notifier.h"
#include "core/reading.h"

namespace gw {
inline std::ostream& operator<<(std::ostream& o, const Series& s) {
  o << s.device << '/' << s.metric;
  for (const auto& [k, v] : s.tags) o << ',' << k << '=' << v;
  return o;
}
}  // namespace gw

namespace gw::alerts {
// doctest's CHECK(a == b) finds our toString() by ADL for enums and cannot print it; compare
// names instead: CHECK(str(e.state) == "firing").
inline std::string str(AlertState s) { return toString(s); }
inline std::string str(Severity s) { return toString(s); }
inline std::string str(DeliveryStatus s) { return toString(s); }
inline std::ostream& operator<<(std::ostream& o, const AlertEvent& e) { return o << alertJson(e); }
}  // namespace gw::alerts
