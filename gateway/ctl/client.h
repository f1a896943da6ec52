// gatewayctl's side of the control socket (protocol: gateway/control/control_server.h).
#pragma once

#include <string>
#include <string_view>

namespace gw::ctl {

/// gatewayctl's exit codes (documented in the README and `gatewayctl --help`).
enum Exit : int {
  kOk = 0,
  kDegraded = 1,       ///< something is down or needs attention (per command)
  kUsage = 64,         ///< bad command line (EX_USAGE, as gatewayd)
  kNotRunning = 3,     ///< no socket, or nobody accepts on it
  kNoPermission = 4,   ///< the socket exists but this user may not connect
  kBadAnswer = 5,      ///< timeout, garbled answer, or the daemon reported an error
  kConfigInvalid = 78  ///< `config check`: the file is invalid (as gatewayd --check-config)
};

struct Reply {
  int exit = kOk;       ///< kOk when `body` holds the answer
  std::string body;     ///< the JSON document (without the trailing newline)
  std::string message;  ///< for people, when exit != kOk
};

/// Sends `command` and reads the answer, within `timeout_ms` overall.
Reply request(const std::string& socket_path, std::string_view command, int timeout_ms = 5000);

}  // namespace gw::ctl
