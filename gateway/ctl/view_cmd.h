// One request, one answer, one rendered view: what `gatewayctl bad`, `check` and `top --once`
// do (the status views in main.cpp do the same).
#pragma once

#include <string>
#include <string_view>

#include "gateway/ctl/render.h"

namespace gw::ctl {

using RenderFn = Rendered (*)(std::string_view json, const Style& style);

/// Sends `request`, prints the rendered answer (or the JSON with `json`) and returns the exit
/// code: the view's verdict, or kNotRunning/kNoPermission/kBadAnswer (with a message on stderr).
int runView(const std::string& socket, int timeout_ms, const std::string& request, RenderFn render,
            bool json, const Style& style);

}  // namespace gw::ctl
