// The contract between a source (MQTT, CoAP, …) and the engine (design: "Components").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/reading.h"
#include "core/status.h"
#include "core/time.h"

namespace gw {

/// One piece of bad input, as a source reports it (Ingest::bad).
struct BadInput {
  std::string_view source;   ///< the source's name: "mqtt", "coap"
  std::string_view reason;   ///< "not_json", "no_template", …
  std::string_view where;    ///< topic, path or URI
  std::string_view payload;  ///< what arrived (an escaped excerpt goes to the dead letters)
  std::string_view device;   ///< when the topic or path template named one; else empty
  size_t size = 0;           ///< the payload's full size (a CoAP block-wise body: all blocks)
};

/// What a source hands its decoded input to: the clock stage, the journal append, the windows
/// and the alerts, all on the event loop's thread.
///
/// Acknowledgement: reading() returns the seq the message's records got (or, for a message
/// that gave no record, the last seq appended before it). The source acknowledges the message
/// to its sender (MQTT PUBACK, CoAP 2.04) only once Source::committed() has reached that seq.
class Ingest {
 public:
  virtual ~Ingest() = default;
  /// Journals the values of one decoded message. `series` holds the device and tags (and the
  /// metric for single-value formats); it is scratch the callee may change. `reference_time` is
  /// the broker's stamp or the receive time, as `reference` says.
  virtual std::uint64_t reading(Series& series, const Decoded& decoded, Nanos reference_time,
                                TimeReference reference) = 0;
  /// Bad input: counted by reason and by device, logged rate-limited with where (topic, path)
  /// and size, kept in the journal's bounded dead-letter table. Never stops anything.
  virtual void bad(const BadInput& input) = 0;
  /// The last seq appended: what a message taken now (even a bad one) waits for.
  virtual std::uint64_t appendedSeq() const = 0;
  /// The source's handler that handed over messages is returning: they were one turn of the
  /// loop (timed as the loop's "ingest" work, gateway/loop_work.h). A source that never calls
  /// it has its turns closed by the next named work or loop check.
  virtual void turnDone() {}
  /// True while the journal cannot take more: a source stops taking input (MQTT leaves the
  /// message unacknowledged, CoAP answers 5.03) rather than read what it cannot keep.
  virtual bool backpressure() const = 0;
  /// A broker's receive stamp for a message the gateway received at `receive_time`: the
  /// gateway's own clock against the broker's.
  virtual void brokerStamp(Nanos stamp, Nanos receive_time) = 0;

  // --- for stateful decoders (Sparkplug B) ---------------------------------------------------
  /// A small named value kept in the journal's state, written with the next commit (in the
  /// same transaction as the readings appended before it), so it survives a restart. Keys are
  /// the caller's, prefixed with its name ("sparkplug/…").
  virtual void putState(std::string_view key, std::string value) = 0;
  /// The value last put (committed or not, also by an earlier run), or nullopt.
  virtual std::optional<std::string> state(std::string_view key) const = 0;
  /// A device announced itself online (a birth) or offline (a death): shown by gatewayctl
  /// sensors and the metrics until it changes.
  virtual void deviceOnline(std::string_view device, bool online) = 0;
};

/// An input of readings. Threading: every method on the event loop's thread.
class Source {
 public:
  virtual ~Source() = default;
  /// Stable name, for status and logs ("mqtt", "coap").
  virtual const std::string& name() const = 0;
  /// Connects, listens, subscribes; from now on it calls its Ingest.
  virtual void start() = 0;
  /// Everything up to `seq` is durable in the journal: acknowledge what waited for it.
  virtual void committed(std::uint64_t seq) = 0;
  /// Stops taking input and lets acknowledgements already due go out. Safe to call twice;
  /// no Ingest call follows.
  virtual void stop() = 0;
  virtual ComponentStatus status() const = 0;
};

}  // namespace gw
