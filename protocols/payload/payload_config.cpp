#include "protocols/payload/payload_config.h"

#include <fmt/format.h>

namespace gw::payload {

void readDecoderFields(config::Section& s, DecoderOptions& d) {
  d.value_field = s.str("value", "value");
  if (d.value_field.empty()) s.fail("value", "must not be empty");
  d.timestamp_field = s.str("timestamp", "");
  const std::string unit = s.str("timestamp_unit", "ms");
  auto u = parseTimeUnit(unit);
  if (!u) s.fail("timestamp_unit", fmt::format("'{}' is not s, ms, us, ns or rfc3339", unit));
  d.timestamp_unit = *u;
  if (auto max = s.size("max_payload")) d.max_payload = *max;
}

}  // namespace gw::payload
