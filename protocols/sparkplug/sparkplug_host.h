// Sparkplug B host application state (design: "Sparkplug B"): births bind metric names to
// aliases per edge node, DATA is resolved by alias, `seq` gaps and DATA without a known birth
// ask for a rebirth, NDEATH/DDEATH mark devices offline. A stateful decoder: the births are
// kept through a StateStore (the journal's state), so a restarted gateway still resolves.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/reading.h"
#include "core/time.h"

namespace gw::sparkplug {

enum class MessageType { kNBirth, kNDeath, kDBirth, kDDeath, kNData, kDData, kNCmd, kDCmd };

/// `spBv1.0/<group>/<type>/<edge_node>[/<device>]`; views into the topic.
struct Topic {
  std::string_view group, edge_node, device;
  MessageType type = MessageType::kNData;
};
/// False for anything that is not a Sparkplug B edge node topic (STATE, other namespaces, a
/// missing or extra level, an empty id).
bool parseTopic(std::string_view topic, Topic& out);

/// Where births are kept across restarts (the journal's state table through Ingest).
class StateStore {
 public:
  virtual ~StateStore() = default;
  virtual std::optional<std::string> get(std::string_view key) const = 0;
  virtual void put(std::string_view key, std::string value) = 0;
};

struct HostOptions {
  /// A `seq` gap not filled within this asks for a rebirth (sparkplug.reorder_timeout).
  Nanos reorder_timeout = 2 * kNanosPerSecond;
  /// At most one rebirth request per edge node this often (sparkplug.rebirth_interval).
  Nanos rebirth_interval = 5 * kNanosPerSecond;
  /// Edge nodes tracked at most (a node id invented by a faulty publisher counts too); past it
  /// DATA is still decoded by name, births are not kept.
  size_t max_nodes = 10000;
  /// Devices tracked per edge node at most; past it a new device's DBIRTH and DATA are read by
  /// name only.
  size_t max_devices = 10000;
  /// Aliases (and names) kept per birth (the node's or one device's) at most.
  size_t max_aliases = 100000;
};

/// What a handled message produced. Called synchronously from handle()/tick().
class HostOutput {
 public:
  virtual ~HostOutput() = default;
  /// One metric as a reading: `series` (device, metric = the Sparkplug name, tags group and,
  /// when not Good, quality) and its value and device time. `historical`: an is_historical
  /// metric (its own time; not live data).
  virtual void reading(Series& series, const Decoded& decoded, bool historical) = 0;
  /// Publish NCMD `Node Control/Rebirth` = true to this edge node (`why` for the log).
  virtual void rebirth(std::string_view group, std::string_view edge_node,
                       std::string_view why) = 0;
  /// A device (`<edge_node>` or `<edge_node>/<device>`) went online (birth) or offline (death).
  virtual void online(std::string_view device, bool online) = 0;
  /// A metric that is not a reading (string, bytes, dataset, template, file, null, …), by
  /// reason; counted.
  virtual void skipped(std::string_view reason) = 0;
};

struct HostCounters {
  std::uint64_t births = 0, deaths = 0, stale_deaths = 0, rebirths_requested = 0;
  std::uint64_t seq_gaps = 0, unknown_alias = 0, historical = 0;
  std::uint64_t nodes = 0;  ///< edge nodes tracked now
};

/// Not thread-safe: one per MQTT source, on the event loop.
class Host {
 public:
  Host(HostOptions options, StateStore* store);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  /// Handles one message on a Sparkplug topic. Returns a bad-input reason ("sparkplug_topic",
  /// "sparkplug_payload", …) or nullptr; a payload that does not parse gives no reading.
  const char* handle(std::string_view topic, std::string_view payload, Nanos now, HostOutput& out);
  /// Due work: seq gaps past reorder_timeout and rate-limited rebirths become rebirth requests.
  void tick(Nanos now, HostOutput& out);
  /// When tick() next has something to do (monotonic, as `now`), or nullopt.
  std::optional<Nanos> nextDeadline() const;

  HostCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The NCMD payload that asks an edge node to rebirth: metric `Node Control/Rebirth`
/// (Boolean) = true, with `timestamp_ms`.
std::string rebirthPayload(std::uint64_t timestamp_ms);

/// The Primary Host STATE payload: {"online":true|false,"timestamp":<ms>}.
std::string statePayload(bool online, std::uint64_t timestamp_ms);

}  // namespace gw::sparkplug
