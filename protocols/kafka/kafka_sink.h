// Kafka sink (librdkafka): idempotent producer, acks=all, lz4 by default, key = device,
// Kafka timestamp = event time, JSON values per the design's "Sinks" section (written by
// core/record_json.h, shared with the file sink).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/component.h"
#include "core/reading.h"
#include "core/sink.h"

namespace gw::kafka {

struct KafkaOptions {
  std::string brokers = "localhost:9092";
  std::string readings_topic = "iot.readings";
  std::string aggregates_topic = "iot.aggregates";
  std::string alerts_topic = "iot.alerts";
  std::string gateway_id;  ///< sent as the `gateway` record header
  /// librdkafka properties passed through as they are; they override our defaults.
  std::map<std::string, std::string> properties;
  Nanos delivery_timeout = 30 * kNanosPerSecond;  ///< per batch; past it the batch is retried
};

/// Thrown by makeKafkaSink for a property librdkafka rejects (a config error).
class KafkaConfigError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Applies our defaults and `options.properties` to a scratch librdkafka configuration, as the
/// producer will; returns the first property librdkafka refuses and its message, or nullopt.
std::optional<std::pair<std::string, std::string>> checkProperties(const KafkaOptions& options);

/// `gatewayctl check`: a producer with the sink's settings asks the cluster for its metadata
/// (TCP, TLS and SASL as configured; nothing is produced). Blocks for about `timeout` at most.
ProbeResult probeKafka(const KafkaOptions& options, Nanos timeout);

/// The sink's send() produces the batch and polls until every record's delivery report has
/// arrived or delivery_timeout (+1 s) has passed; then it purges what is left, so nothing of a
/// failed batch is still queued when the batch is sent again. kRejected only for records that
/// can never be accepted (too large, invalid record or timestamp); everything else is kRetry.
/// interrupt() is sticky: meant for shutdown, every later send() returns kRetry at once.
std::unique_ptr<Sink> makeKafkaSink(const KafkaOptions& options);

}  // namespace gw::kafka
