// `[mqtt]` and its `[[mqtt.subscribe]]` tables, read in this folder (conventions: "Config is
// declarative and strict").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/section.h"
#include "protocols/mqtt/mqtt_client.h"
#include "protocols/payload/message_decoder.h"
#include "protocols/sparkplug/sparkplug_config.h"

namespace gw::mqtt {

struct SubscribeConfig {
  std::string topic;  ///< MQTT filter
  int qos = 1;
  std::string template_text;        ///< topic template ("plant1/{line}/{device}/{metric}")
  payload::PayloadOptions payload;  ///< format (json, value, fields, senml) and its keys
  bool sparkplug = false;           ///< format = "sparkplug_b": no template, no payload keys
};

struct MqttConfig {
  std::string uri;
  ClientOptions client;  ///< host/port/tls/credentials/session resolved from the keys
  std::vector<SubscribeConfig> subscriptions;
  /// `batch_wait`: how long the socket is left to fill after a short read; none = a tenth of
  /// buffer.commit_interval (see batchWait()).
  std::optional<Nanos> batch_wait;
  sparkplug::SparkplugConfig sparkplug;  ///< `[sparkplug]` (defaults when absent)
};

/// The read_batch_wait the client uses: `batch_wait` if set, else commit_interval / 10, and
/// never more than commit_interval / 4 (QoS 1 acknowledgements already wait for the commit).
Nanos batchWait(const MqttConfig& config, Nanos commit_interval);

/// Reads `[mqtt]`; `gateway_id` is the client id's default; `sparkplug` is the `[sparkplug]`
/// table or nullptr. Throws config::ConfigError.
MqttConfig parseConfig(config::Section& s, std::string_view gateway_id,
                       config::Section* sparkplug = nullptr);

}  // namespace gw::mqtt
