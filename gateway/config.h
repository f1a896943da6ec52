// gatewayd's configuration: one immutable struct read from TOML in one place (conventions:
// "Config is declarative and strict"). --check-config and start-up run the same code.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "aggregators/aggregator.h"
#include "alerts/rule.h"
#include "buffer/journal.h"
#include "core/component.h"
#include "core/config/section.h"
#include "core/retry_policy.h"
#include "core/time.h"
#include "gateway/forwarder.h"
#include "gateway/limits.h"

namespace gw::config {

struct GatewayConfig {
  std::string id = "gateway";
  std::filesystem::path state_dir;
  std::filesystem::path control_socket;
  Nanos stats_interval = 60 * kNanosPerSecond;  ///< how often a `stats` line is logged
  bool stats_json = false;  ///< stats_format = "json": `stats {…}` instead of the short line
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
  /// "full" by default: an acknowledged reading survives a power cut (see buffer::Synchronous).
  buffer::Synchronous synchronous = buffer::Synchronous::kFull;
  /// buffer.min_free: by default the smaller of 256MiB and 5% of the filesystem (a small SD
  /// card keeps 5%, not a quarter of itself); a size alone, a percentage alone, or 0 (off).
  std::uint64_t min_free = 256ull << 20;
  unsigned min_free_percent = 5;
};

/// A configured sink: its own config and the keys every sink has (batch, retry bounds).
struct SinkEntry {
  std::shared_ptr<const SinkConfig> config;
  ForwarderOptions forward;
};

/// `[metrics]`: Prometheus text exposition over HTTP (off unless `listen` is set).
struct MetricsConfig {
  std::string listen;  ///< as written, e.g. "127.0.0.1:9108"
  std::string host;    ///< numeric address: "127.0.0.1", "::1", "0.0.0.0"
  std::uint16_t port = 9108;
  /// Per-device series (clock offset, drift, …) for this many devices at most, so that the
  /// exposition stays small at plant scale; the totals cover every device.
  std::uint64_t per_device_limit = 1000;
};

/// `[aggregate]`: windows are on by default (10 s, count/min/max/avg/p95); `enabled = false`
/// turns them off.
struct AggregateConfig {
  bool enabled = true;
  aggregators::WindowOptions windows;
};

/// `[notify]`: the notifiers rules name in `notify` (each an outbox sink "notify.<name>"), and
/// how failed deliveries are retried.
struct NotifyConfig {
  std::vector<std::shared_ptr<const SinkConfig>> notifiers;
  RetryOptions retry;  ///< retry_initial, retry_max
  /// Every configured notifier name ("pagerduty", webhook names).
  std::vector<std::string> names() const;
};

struct Config {
  std::filesystem::path file;
  GatewayConfig gateway;
  ClockConfig clock;
  BufferConfig buffer;
  AggregateConfig aggregate;
  std::vector<alerts::Rule> alerts;  ///< [[alert]]
  NotifyConfig notify;
  std::optional<MetricsConfig> metrics;
  LimitsConfig limits;  ///< [limits]
  /// The components, in registry order (gateway/builtin_components.inc). Shared and immutable:
  /// a Config is copied for each pipeline.
  std::vector<std::shared_ptr<const SourceConfig>> sources;
  std::vector<SinkEntry> sinks;
  /// Every file and folder the config names (for --check-config's service-user check).
  std::vector<PathRef> paths;
};

/// Reads and validates a config file. Relative paths are resolved against the file's folder.
/// Throws ConfigError (`file:line: key: reason`) on any problem, including unknown keys.
Config load(const std::filesystem::path& file);
/// The same for a config already in memory, read as if it were `file` (the fuzz target: no file
/// written and read back per input).
Config load(const std::filesystem::path& file, std::string_view text);

}  // namespace gw::config
