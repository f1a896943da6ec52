// `[kafka]`, read in this folder. Every librdkafka property is checked here with
// rd_kafka_conf_set, so `--check-config` refuses what the producer would refuse at start.
#pragma once

#include <string_view>

#include "core/component.h"
#include "core/config/section.h"
#include "protocols/kafka/kafka_sink.h"

namespace gw::kafka {

/// Reads `[kafka]` (not the generic sink keys batch/retry_min/retry_max, which the engine reads).
/// Throws config::ConfigError, with the line of a property librdkafka refuses.
KafkaOptions parseConfig(config::Section& s, std::string_view gateway_id);

/// The `[kafka]` sink for the registry.
Component component();

}  // namespace gw::kafka
