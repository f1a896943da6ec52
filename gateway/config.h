// gatewayd's configuration: one immutable struct read from TOML in one place (conventions:
// "Config is declarative and strict"). --check-config and start-up run the same code.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "aggregators/aggregator.h"
#include "alerts/pagerduty_notifier.h"
#include "alerts/rule.h"
#include "alerts/webhook_notifier.h"
#include "buffer/journal.h"
#include "core/retry_policy.h"
#include "core/time.h"
#include "gateway/forwarder.h"
#include "protocols/coap/coap_source.h"
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
  kafka::KafkaOptions options;  ///< brokers, the three topics, properties
  ForwarderOptions forward;
};

struct TimeseriesConfig {
  timeseries::TimeseriesOptions options;  ///< url, token, gzip, send_readings/aggregates
  ForwarderOptions forward;
};

/// `[coap]`: the server devices PUT/POST to and the resources the gateway observes.
struct CoapConfig {
  coap::SourceOptions source;
};

/// `[metrics]`: Prometheus text exposition over HTTP (off unless `listen` is set).
struct MetricsConfig {
  std::string listen;  ///< as written, e.g. "127.0.0.1:9108"
  std::string host;    ///< numeric address: "127.0.0.1", "::1", "0.0.0.0"
  std::uint16_t port = 9108;
};

/// `[aggregate]`: windows are on by default (10 s, count/min/max/avg/p95); `enabled = false`
/// turns them off.
struct AggregateConfig {
  bool enabled = true;
  aggregators::WindowOptions windows;
};

/// `[notify]`: the notifiers rules name in `notify`, and how failed deliveries are retried.
struct NotifyConfig {
  std::optional<alerts::PagerDutyOptions> pagerduty;  ///< [notify.pagerduty]
  std::vector<alerts::WebhookOptions> webhooks;       ///< [notify.webhook.<name>]
  RetryOptions retry;                                 ///< retry_initial, retry_max
  /// Every configured notifier name ("pagerduty", webhook names).
  std::vector<std::string> names() const;
};

struct Config {
  std::filesystem::path file;
  GatewayConfig gateway;
  MqttConfig mqtt;
  ClockConfig clock;
  BufferConfig buffer;
  std::optional<KafkaConfig> kafka;
  std::optional<TimeseriesConfig> timeseries;
  AggregateConfig aggregate;
  std::vector<alerts::Rule> alerts;  ///< [[alert]]
  NotifyConfig notify;
  std::optional<CoapConfig> coap;
  std::optional<MetricsConfig> metrics;
};

/// Reads and validates a config file. Relative paths are resolved against the file's folder.
/// Throws ConfigError (`file:line: key: reason`) on any problem, including unknown keys.
Config load(const std::filesystem::path& file);

}  // namespace gw::config
