// `[timeseries]`, read in this folder.
#pragma once

#include "core/component.h"
#include "core/config/section.h"
#include "protocols/timeseries/timeseries_sink.h"

namespace gw::timeseries {

/// Reads `[timeseries]` (not the generic sink keys, which the engine reads). Throws
/// config::ConfigError.
TimeseriesOptions parseConfig(config::Section& s);

/// The `[timeseries]` sink for the registry.
Component component();

}  // namespace gw::timeseries
