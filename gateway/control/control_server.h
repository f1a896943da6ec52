// The control socket (design: "Operations"): a Unix stream socket that `gatewayctl` talks to.
//
// Protocol: the client sends one request line (a command word such as "status", at most
// kMaxRequest bytes, ended by '\n'); the server answers with one JSON document and a '\n', then
// closes the connection. An unknown command gets {"error":"…"}. Requests are served on the
// daemon's event loop, so an answer is a consistent snapshot of the pipeline.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/time.h"

namespace boost::asio {
class io_context;
}

namespace gw::control {

inline constexpr const char* kDefaultSocket = "/run/iot-gateway/control.sock";
inline constexpr std::size_t kMaxRequest = 256;
/// The group whose members may use the socket (created by the package's sysusers.d file).
inline constexpr const char* kGroup = "iot-gateway";

/// Thrown by the constructor when the socket cannot be served: another live daemon holds it,
/// the path is not a socket, the folder is not writable. The message says what to do.
class ControlError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ControlOptions {
  std::filesystem::path path = kDefaultSocket;
  /// A client must send its request and read the answer within this.
  Nanos timeout = 5 * kNanosPerSecond;
  /// Clients served at the same time; more are answered {"error":"busy"} and closed.
  std::size_t max_clients = 8;
};

/// Answers one request (the line without its '\n'); returns one JSON document.
using Handler = std::function<std::string(std::string_view request)>;
/// Sends the answer to a request (one JSON document). Call it once, on the loop; after the
/// client went away or timed out it does nothing.
using Reply = std::function<void(std::string answer)>;
/// Answers one request later (a view assembled over several turns of the loop, issue 13):
/// calls `reply` when the answer is ready, possibly before it returns. `request` is valid only
/// during the call.
using AsyncHandler = std::function<void(std::string_view request, Reply reply)>;

/// Threading: construct, destroy and run on the io_context's (single) thread; the handler is
/// called on it.
class ControlServer {
 public:
  /// Binds the socket (mode 0660, group iot-gateway when that group exists). A socket file left
  /// by a crashed run (nobody accepts on it) is replaced; one a live process accepts on is
  /// refused with ControlError.
  ControlServer(boost::asio::io_context& io, ControlOptions options, Handler handler);
  ControlServer(boost::asio::io_context& io, ControlOptions options, AsyncHandler handler);
  /// Closes every connection and removes the socket file (if it is still ours).
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::filesystem::path& path() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace gw::control
