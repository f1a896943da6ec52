// `gatewayctl tail DEVICE [-n N] [--follow] [--json]` (issue 14).
#pragma once

#include <string>

#include "gateway/ctl/render.h"

namespace gw::ctl {

struct TailOptions {
  std::string device;
  size_t lines = 10;
  bool follow = false;  ///< keep polling once a second for newer readings (until Ctrl-C)
  bool json = false;    ///< gatewayd's documents as they come, one per line
};

/// Runs the command; returns the exit code.
int runTail(const std::string& socket, int timeout_ms, const TailOptions& o, const Style& style);

}  // namespace gw::ctl
