// gatewayd's configuration: one immutable struct read from TOML in one place (conventions:
// "Config is declarative and strict"). --check-config and start-up run the same code.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "buffer/journal.h"
#include "core/time.h"
#include "gateway/forwarder.h"
#include "protocols/kafka/kafka_sink.h"
#include "protocols/mqtt/mqtt_client.h"
#include "protocols/payload/decoder.h"
#include "protocols/timeseries/timeseries_sink.h"

namespace gw::config {

/// A configuration error, already formatted as `file:line: key: reason`.
class ConfigError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kExitConfig = 78;  // EX_CONFIG

struct GatewayConfig {
  std::string id = "gateway";
  std::filesystem::path state_dir;
  std::filesystem::path control_socket;
  Nanos stats_interval = 60 * kNanosPerSecond;  ///< how often a `stats` line is logged
};

struct SubscribeConfig {
  std::string topic;  ///< MQTT filter
  int qos = 1;
  std::string template_text;  ///< topic template ("plant1/{line}/{device}/{metric}")
  payload::DecoderOptions decoder;
};

struct MqttConfig {
  std::string uri;
  mqtt::ClientOptions client;  ///< host/port/tls/credentials/session resolved from the keys
  std::vector<SubscribeConfig> subscriptions;
};

struct ClockConfig {
  bool broker_reference = true;  ///< reference = "broker" (stamp if present) or "receive"
  std::string broker_property = "timestamp";
  Nanos max_skew = 24 * 3600 * kNanosPerSecond;
  Nanos step = 5 * kNanosPerSecond;
  /// A device clock within this of the estimate is trusted as it is (its timestamps are kept
  /// verbatim rather than shifted by the filter's residual, about the minimum network delay).
  Nanos tolerance = 25 * kNanosPerMilli;
};

struct BufferConfig {
  std::uint64_t max_size = 512ull << 20;
  Nanos max_age = 7 * 86400 * kNanosPerSecond;
  Nanos commit_interval = 50 * kNanosPerMilli;
  size_t batch = 1000;  ///< rows per transaction at most
  bool synchronous_full = false;
};

struct KafkaConfig {
  kafka::KafkaOptions options;
  std::string aggregates_topic = "iot.aggregates";
  std::string alerts_topic = "iot.alerts";
  ForwarderOptions forward;
};

struct TimeseriesConfig {
  timeseries::TimeseriesOptions options;
  bool send_readings = true;
  bool send_aggregates = true;
  ForwarderOptions forward;
};

struct Config {
  std::filesystem::path file;
  GatewayConfig gateway;
  MqttConfig mqtt;
  ClockConfig clock;
  BufferConfig buffer;
  std::optional<KafkaConfig> kafka;
  std::optional<TimeseriesConfig> timeseries;
};

/// Reads and validates a config file. Relative paths are resolved against the file's folder.
/// Throws ConfigError (`file:line: key: reason`) on any problem, including unknown keys.
Config load(const std::filesystem::path& file);

}  // namespace gw::config
