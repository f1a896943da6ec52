// `[mqtt]` and its `[[mqtt.subscribe]]` tables, read in this folder (conventions: "Config is
// declarative and strict").
#pragma once

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
  sparkplug::SparkplugConfig sparkplug;  ///< `[sparkplug]` (defaults when absent)
};

/// Reads `[mqtt]`; `gateway_id` is the client id's default; `sparkplug` is the `[sparkplug]`
/// table or nullptr. Throws config::ConfigError.
MqttConfig parseConfig(config::Section& s, std::string_view gateway_id,
                       config::Section* sparkplug = nullptr);

}  // namespace gw::mqtt
