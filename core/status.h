// Typed status (conventions: "Status is typed"): components report these structs; one writer
// turns them into the control socket's JSON, another into Prometheus text, and gatewayctl
// draws its tables from the JSON. Nobody concatenates JSON for a status outside the writers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace gw {

/// A figure a component reports besides its state: a counter (only grows while the component
/// runs), a gauge (a current amount) or a flag (0/1).
struct Figure {
  enum class Kind : std::uint8_t { kCounter, kGauge, kFlag };
  std::string_view key;  ///< JSON key and Prometheus name part: a literal ("in_flight")
  std::uint64_t value = 0;
  Kind kind = Kind::kCounter;
  std::string_view help;  ///< one line for Prometheus' HELP: a literal
};

/// What a source (or another component) says about itself.
struct ComponentStatus {
  std::string name;    ///< "mqtt", "coap"
  std::string target;  ///< where it connects or listens; never a secret
  bool up = true;      ///< connected / serving
  std::vector<Figure> figures;
  std::string last_error;     ///< why it is down, or the last trouble it had
  Nanos last_error_time = 0;  ///< wall time of last_error; 0 = none
  /// The figure named `key`, or 0.
  std::uint64_t figure(std::string_view key) const {
    for (const auto& f : figures)
      if (f.key == key) return f.value;
    return 0;
  }
};

}  // namespace gw
