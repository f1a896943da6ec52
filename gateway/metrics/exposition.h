// The Prometheus text exposition (format 0.0.4) of gatewayd's figures: the same ones
// `gatewayctl status` and `gatewayctl sensors` show, rendered from the same StatusSnapshot as
// their JSON (gateway/status.h) so the two can never disagree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/status.h"

namespace gw::metrics {

/// The parts of the pipeline's snapshot the exposition shows.
inline constexpr StatusParts kExpositionParts =
    status_part::kCounters | status_part::kSources | status_part::kSinks | status_part::kJournal |
    status_part::kClocks | status_part::kDevices | status_part::kAlerts | status_part::kUndelivered;

/// Renders the exposition from a snapshot with kExpositionParts and the daemon's part.
std::string renderExposition(const StatusSnapshot& snapshot);

/// Escapes a label value per the text format: backslash, double quote and newline.
std::string escapeLabel(std::string_view value);

}  // namespace gw::metrics
