// `gatewayctl top`: a live view refreshed in place (like `vector top`), for a terminal over SSH
// at 80 columns; --once prints one frame (for scripts, tests and captures).
#pragma once

#include <string>

#include "gateway/ctl/render.h"

namespace gw::ctl {

struct TopOptions {
  double interval_s = 2;
  bool once = false;
};

/// Returns the last frame's exit code (0, 1) or a request failure's.
int runTop(const std::string& socket, int timeout_ms, const TopOptions& o, const Style& style);

}  // namespace gw::ctl
