// `gatewayctl check` (issue 14): gatewayd tests the connection to each configured broker, sink
// and notifier (SourceConfig/SinkConfig::probe) on threads of its own, so the event loop and the
// control socket keep going while a dead host times out.
//
// Requests: `check` starts a run (or answers the one still running) and `check <id>` asks for
// its state; both answer {"id":n,"done":bool,"timeout_ms":n,"results":[{"kind":"source"|"sink"|
// "notifier","name","target","state":"running"|"ok"|"failed"|"not tested","detail","ms"}…]}.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"
#include "gateway/config.h"

namespace gw {

/// Each probe's time limit.
inline constexpr Nanos kCheckTimeout = 5 * kNanosPerSecond;

/// Nullopt unless `line` is a check request; `check` gives 0 (start), `check <id>` the id.
std::optional<std::uint64_t> parseCheckRequest(std::string_view line);

class CheckRunner {
 public:
  /// Starts probing everything `cfg` configures, unless a run is still going; returns the
  /// answer document of the run.
  std::string start(const config::Config& cfg, Nanos timeout = kCheckTimeout);
  /// The answer document of run `id`, or an error document for an unknown (older) id.
  std::string json(std::uint64_t id) const;

  struct Result {
    std::string kind, name, target;
    std::string state = "running";
    std::string detail;
    double ms = 0;
  };
  struct Run {
    std::uint64_t id = 0;
    Nanos timeout = 0;
    mutable std::mutex mu;
    std::vector<Result> results;  // guarded by mu
    std::size_t running = 0;      // guarded by mu
  };

 private:
  std::shared_ptr<Run> run_;  // the latest run; its threads hold it too
  std::uint64_t next_id_ = 1;
};

}  // namespace gw
