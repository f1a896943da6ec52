// The Prometheus text exposition (format 0.0.4) of gatewayd's figures: the same ones
// `gatewayctl status` and `gatewayctl sensors` show, rendered from the control views' JSON so
// the two can never disagree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/time.h"

namespace gw::metrics {

/// What the daemon itself knows (not the pipeline).
struct DaemonInfo {
  std::string version;
  Nanos start_time = 0;  ///< wall time gatewayd started
  Nanos now = 0;         ///< wall time of the scrape
  std::uint64_t reloads = 0;
  std::uint64_t reload_failures = 0;
};

/// Renders the exposition from Pipeline::control("status"), ("sensors") and ("alerts").
/// Fields missing from the JSON are left out. Throws std::runtime_error on JSON that is not a
/// document (a bug).
std::string renderExposition(const DaemonInfo& daemon, std::string_view status_json,
                             std::string_view sensors_json, std::string_view alerts_json);

/// Escapes a label value per the text format: backslash, double quote and newline.
std::string escapeLabel(std::string_view value);

}  // namespace gw::metrics
