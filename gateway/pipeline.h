// Wires sources, the journal and the sinks on one event loop (design: "Data flow", "Threads").
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/time.h"
#include "gateway/config.h"
#include "gateway/device_query.h"
#include "gateway/status.h"

namespace boost::asio {
class io_context;
}

namespace gw {

/// Threading: every method on the io_context's (single) thread.
class Pipeline {
 public:
  /// Opens the journal and builds the components the config names. Throws
  /// buffer::JournalError or std::runtime_error when that is impossible. `clock` is read on the
  /// loop and, for the records' ages, on the sinks' worker threads.
  Pipeline(boost::asio::io_context& io, const config::Config& config, Clock clock = {});
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Restores windows and alerts from the journal, starts the sources, the forwarders and the
  /// timers.
  void start();
  /// Commits and acknowledges what was received, stops the sources (MQTT keeps its session),
  /// stops the forwarders and writes the cursors. Safe to call twice.
  void stop();
  /// The status parts `what` names (gateway/status.h). Also samples the counters for the rates
  /// it reports.
  StatusSnapshot snapshot(StatusParts what) const;
  /// With kDevices: the devices `devices` selects (filtered, sorted, limited).
  StatusSnapshot snapshot(StatusParts what, const DeviceQuery& devices) const;
  /// The same, the devices walked in slices across turns of the loop (DeviceWalk) so that
  /// ingest runs between them: `done` gets the snapshot when the walk is over (the other parts
  /// as of then), or immediately without kDevices. Not called if the pipeline is destroyed
  /// first.
  void snapshot(StatusParts what, DeviceQuery devices,
                std::function<void(StatusSnapshot)> done) const;
  /// Samples the counters for the rates (call it every few seconds).
  void sampleRates() const;
  /// `gatewayctl tail`'s document (gateway/tail.cpp): the device's latest `limit` readings
  /// with seq > `after`, each the Kafka reading record.
  std::string tailJson(std::string_view device, std::uint64_t after, size_t limit) const;
  /// `gatewayctl bad`'s document (gateway/bad_input.cpp): counts by reason and device, and the
  /// newest `limit` dead letters.
  std::string badJson(std::size_t limit) const;
  /// One line for systemd's STATUS=, e.g. "mqtt connected, 12345 readings, kafka up backlog 0".
  std::string statusLine() const;

  struct Impl;  // gateway/pipeline_impl.h

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw
