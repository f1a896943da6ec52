// Prometheus metrics over HTTP (design: "Operations"): `GET /metrics` answers the text
// exposition format 0.0.4, served from the daemon's event loop. Off unless `[metrics] listen`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/time.h"

namespace boost::asio {
class io_context;
}

namespace gw::metrics {

/// Thrown by the constructor when the address cannot be bound (in use, not local).
class MetricsError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct MetricsServerOptions {
  std::string host = "127.0.0.1";        ///< numeric address
  std::uint16_t port = 9108;             ///< 0 = any free port (tests), see port()
  Nanos timeout = 10 * kNanosPerSecond;  ///< per connection: request in, response out
  std::size_t max_clients = 8;
};

/// Renders the exposition text at the time of a scrape.
using Renderer = std::function<std::string()>;
/// Renders it later (per-device series assembled over several turns of the loop, issue 13):
/// calls `done` once with the text, on the loop, possibly before it returns.
using AsyncRenderer = std::function<void(std::function<void(std::string text)> done)>;

/// Threading: construct, destroy and run on the io_context's (single) thread; the renderer is
/// called on it.
class MetricsServer {
 public:
  MetricsServer(boost::asio::io_context& io, MetricsServerOptions options, Renderer render);
  MetricsServer(boost::asio::io_context& io, MetricsServerOptions options, AsyncRenderer render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  /// The port bound (useful with port 0).
  std::uint16_t port() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace gw::metrics
