// Kafka sink (librdkafka): idempotent producer, acks=all, lz4 by default, key = device,
// Kafka timestamp = event time, JSON values per the design's "Sinks" section.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/reading.h"
#include "core/sink.h"

namespace gw::kafka {

struct KafkaOptions {
  std::string brokers = "localhost:9092";
  std::string readings_topic = "iot.readings";
  std::string gateway_id;  ///< sent as the `gateway` record header
  /// librdkafka properties passed through as they are; they override our defaults.
  std::map<std::string, std::string> properties;
  Nanos delivery_timeout = 30 * kNanosPerSecond;  ///< per batch; past it the batch is retried
};

/// Thrown by makeKafkaSink for a property librdkafka rejects (a config error).
class KafkaConfigError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::unique_ptr<Sink> makeKafkaSink(const KafkaOptions& options);

/// Appends the reading's JSON value: {"device","metric","tags":{…},"value","time",
/// "device_time"?,"reference","offset_ms"?,"seq"}.
void appendReadingJson(std::string& out, const ReadingRecord& r);

}  // namespace gw::kafka
