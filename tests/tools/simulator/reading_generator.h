// Deterministic sensor readings for gw-sim: device/line naming, topic expansion, random-walk
// values and payload formatting. No MQTT in here, so it stays testable on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"
#include "tests/tools/simulator/device_clock.h"

namespace gw::sim {

enum class PayloadFormat { kJson, kValue, kFields };

std::optional<PayloadFormat> parsePayloadFormat(std::string_view s);

/// A metric with its realistic range; values random-walk inside [lo, hi].
struct MetricSpec {
  std::string name;
  double lo = 0;
  double hi = 100;
};

/// Known ranges (bearing_temp, vibration, pressure, current, flow, humidity); any other name
/// gets 0..100.
MetricSpec metricSpecFor(std::string_view name);

struct Device {
  std::string name;
  std::string line;
};

struct GeneratorOptions {
  int devices = 50;
  int lines = 5;
  std::string device_prefix = "pump-";
  std::vector<std::string> metrics = {"bearing_temp", "vibration", "pressure", "current"};
  std::string topic_template = "plant1/{line}/{device}/{metric}";
  PayloadFormat format = PayloadFormat::kJson;
  bool timestamp = true;
  std::uint64_t seed = 1;
  std::string odd_device;  // empty: none
  /// Per-device clock errors; "*" applies to every device not named. Unknown names throw.
  std::vector<ClockAssignment> clocks;
};

/// One value carried by a message: index into metrics() and the value as sent.
struct Field {
  std::size_t metric = 0;
  double value = 0;
};

/// One MQTT message to publish, with what it carries (for the --out record).
struct SimMessage {
  std::string topic;
  std::string payload;
  std::int64_t ts_ms = 0;             // the device's stamp (what the payload carries)
  Nanos true_ns = 0;                  // true time the reading was taken (epoch ns)
  std::optional<Nanos> delay_ns;      // network delay before the publish (--delay)
  std::optional<std::size_t> device;  // index into devices(); absent for an unknown topic
  std::vector<Field> fields;          // empty for bad input
  std::string bad;                    // empty for a good reading, else the reason
  int attempts = 0;
};

/// Returns an error message if `level` cannot be a single MQTT topic level.
std::optional<std::string> checkTopicLevel(std::string_view level);

/// Appends `v` in shortest round-trip form (std::to_chars).
void appendShortest(std::string& out, double v);

class ReadingGenerator {
 public:
  /// Throws std::invalid_argument on a bad option (device name with '/', unknown placeholder…).
  explicit ReadingGenerator(GeneratorOptions opts);

  /// The next good message in round-robin order (device-major, then metric), values advanced
  /// by one random-walk step. Deterministic for a given seed, independent of `ts_ms`.
  /// Stamped `ts_ms` as is, whatever the device's clock.
  SimMessage next(std::int64_t ts_ms);

  /// As next(), taken at true time `true_ns`: stamped with the device's clock reading then.
  SimMessage nextAt(Nanos true_ns);

  /// Sets the run start the clock errors count from (before nextAt()/deviceMillis()).
  void startClocks(Nanos run_start) { run_start_ = run_start; }

  /// Device `device`'s clock at true time `true_ns`, in epoch ms (rounded down).
  std::int64_t deviceMillis(std::size_t device, Nanos true_ns) const;

  const ClockSpec& clockOf(std::size_t device) const { return clocks_[device]; }

  /// One message per kind of bad input (not JSON, non-numeric, NaN, 10 MiB, unknown topic).
  std::vector<SimMessage> badInputs(std::int64_t ts_ms) const;

  /// Appends one JSON line per field (or one for a bad message) to `out`:
  /// {"topic","device","line","metric","value","ts","true_ts"[,"delay_ms"][,"bad"]}; ts is the
  /// device's stamp in epoch ms, true_ts the true time (epoch ms with µs decimals) and
  /// delay_ms the scheduled network delay.
  void appendRecords(std::string& out, const SimMessage& m) const;

  const std::vector<Device>& devices() const { return devices_; }
  const std::vector<MetricSpec>& metrics() const { return metrics_; }

 private:
  void resolveClocks();
  SimMessage make(std::int64_t ts_ms);
  std::string topicFor(const Device& d, std::string_view metric) const;
  double step(std::size_t device, std::size_t metric);

  GeneratorOptions opts_;
  std::vector<Device> devices_;
  std::vector<MetricSpec> metrics_;
  std::vector<double> state_;  // device-major random-walk state
  std::mt19937_64 rng_;
  std::size_t next_device_ = 0;
  std::size_t next_metric_ = 0;
  std::vector<ClockSpec> clocks_;  // per device
  Nanos run_start_ = 0;
};

}  // namespace gw::sim
