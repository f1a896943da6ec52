// `gatewayctl check`: asks gatewayd to test its connections, waits for the answers.
#pragma once

#include <string>

#include "gateway/ctl/render.h"

namespace gw::ctl {

/// Starts a check, polls until every test answered (or the tests' own time limit passed by
/// 5 s), prints the result; exit 1 when a test failed.
int runCheck(const std::string& socket, int timeout_ms, bool json, const Style& style);

}  // namespace gw::ctl
