// The component model (design: "Components"): every source, sink and notifier is parsed from
// its own config table in its own folder, into an immutable config that the engine builds the
// running component from. One registry function (gateway/registry.cpp) lists them all.
//
// Adding a sink: a folder under protocols/ with the sink (core/sink.h), its config parser and
// a `component()` function returning a Component; one line in gateway/builtin_components.inc
// and one CMake line. Nothing else: cursors, retries, status and reload come from the engine.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/sink.h"
#include "core/time.h"

namespace boost::asio {
class io_context;
}

namespace gw {

namespace config {
class Section;
}
class Ingest;
class Source;

/// What a component's parser is given besides its table.
struct ParseContext {
  std::string gateway_id;
  /// The name of a named table (`ops` for `[notify.webhook.ops]`); empty otherwise.
  std::string instance;
  /// Another top-level table a component reads besides its own (`[sparkplug]` for the MQTT
  /// source), or nullptr when absent; checked for unknown keys with the rest of the config.
  std::function<config::Section*(std::string_view table)> table;
};

/// What a component is built with, at start-up and at each reload. Built components run on
/// `io`'s (single) thread unless their interface says otherwise (Sink::send).
struct BuildContext {
  boost::asio::io_context& io;
  std::string gateway_id;
  /// `[clock]`: take a broker's receive stamp (a message property named `broker_property`) as
  /// the reference time when present, else the receive time.
  bool broker_reference = true;
  std::string broker_property = "timestamp";
  /// `buffer.commit_interval`: sources that batch their reads keep their wait a fraction of it.
  Nanos commit_interval = 50 * kNanosPerMilli;
};

/// `gatewayctl check`'s test of one component's connection: TCP, TLS where configured, auth
/// where the protocol allows it without side effects. Nothing is sent that a server would keep.
struct ProbeResult {
  bool ok = false;
  std::string detail;  ///< what was tested, or why it failed (the cause); never a secret
};
/// Runs the test, blocking for about `timeout` at most, on a thread of its own (never the event
/// loop). It holds its own copy of the options, so it may outlive the config it came from.
using Probe = std::function<ProbeResult(Nanos timeout)>;

/// A sink's (or a notifier's) parsed, immutable config.
class SinkConfig {
 public:
  virtual ~SinkConfig() = default;
  /// Its name in status output and logs, and its journal cursor: the built Sink's name()
  /// returns the same string.
  virtual std::string name() const = 0;
  /// Where it sends, for status output. Never a secret (no password, token or URL path that
  /// carries one).
  virtual std::string target() const = 0;
  /// Builds the sink. May throw std::runtime_error only for what a config check cannot see
  /// (a library that cannot be set up); everything the config can get wrong, its parser refused.
  virtual std::unique_ptr<Sink> build(const BuildContext& context) const = 0;
  /// Its connection test for `gatewayctl check`; empty when there is nothing to test.
  virtual Probe probe() const { return {}; }
};

/// A SinkConfig made of its parts, for a sink whose config is only its options (captured by
/// `build`).
class BasicSinkConfig final : public SinkConfig {
 public:
  using Build = std::function<std::unique_ptr<Sink>(const BuildContext&)>;
  BasicSinkConfig(std::string name, std::string target, Build build, Probe probe = {})
      : name_(std::move(name)),
        target_(std::move(target)),
        build_(std::move(build)),
        probe_(std::move(probe)) {}
  std::string name() const override { return name_; }
  std::string target() const override { return target_; }
  std::unique_ptr<Sink> build(const BuildContext& context) const override {
    return build_(context);
  }
  Probe probe() const override { return probe_; }

 private:
  std::string name_, target_;
  Build build_;
  Probe probe_;
};

/// A source's parsed, immutable config.
class SourceConfig {
 public:
  virtual ~SourceConfig() = default;
  virtual std::string name() const = 0;
  virtual std::string target() const = 0;
  /// Builds the source; it reports to `ingest`, which outlives it. Throws std::runtime_error
  /// when it cannot run at all (a listening port that is taken).
  virtual std::unique_ptr<Source> build(const BuildContext& context, Ingest& ingest) const = 0;
  /// A warning for the log when a reload replaces `previous` (same name) with this config and
  /// something cannot carry over; empty when nothing is lost.
  virtual std::string reloadWarning(const SourceConfig& previous) const { return {}; }
  /// Its connection test for `gatewayctl check` (a broker); empty when there is nothing to test.
  virtual Probe probe() const { return {}; }
};

enum class ComponentKind { kSource, kSink, kNotifier };

/// One built-in component, as the registry lists it.
struct Component {
  ComponentKind kind = ComponentKind::kSink;
  /// Its config table ("kafka", "notify.pagerduty"); with `named`, the parent of one table per
  /// instance ("notify.webhook" for `[notify.webhook.<name>]`).
  std::string_view table;
  bool named = false;
  /// Reads the table and refuses everything start-up would refuse (throws config::ConfigError,
  /// `file:line: key: reason`). For sinks the engine has already read the keys every sink has
  /// (`batch`, `retry_min`, `retry_max`). Exactly one of the two is set, by kind.
  std::unique_ptr<SourceConfig> (*parse_source)(config::Section&, const ParseContext&) = nullptr;
  std::unique_ptr<SinkConfig> (*parse_sink)(config::Section&, const ParseContext&) = nullptr;
};

}  // namespace gw
