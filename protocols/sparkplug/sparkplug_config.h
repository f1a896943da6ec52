// `[sparkplug]`, read in this folder (conventions: "Config is declarative and strict").
#pragma once

#include <string>

#include "core/config/section.h"
#include "protocols/sparkplug/sparkplug_host.h"

namespace gw::sparkplug {

struct SparkplugConfig {
  /// Set: the gateway is a Primary Host and publishes spBv1.0/STATE/<host_id> (birth + Will).
  std::string host_id;
  HostOptions host;
};

/// Reads `[sparkplug]`. Throws config::ConfigError.
SparkplugConfig parseConfig(config::Section& s);

}  // namespace gw::sparkplug
