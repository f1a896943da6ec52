// One request, one answer, one rendered view: what `gatewayctl status`, `sensors`, `bad`, `check`,
// `top --once` and the other views do.
#pragma once

#include <string>
#include <string_view>

#include "gateway/ctl/client.h"
#include "gateway/ctl/render.h"

namespace gw::ctl {

using RenderFn = Rendered (*)(std::string_view json, const Style& style);

/// Sends `request`, prints the rendered answer (or the JSON with `json`) and returns the exit
/// code: the view's verdict, or kNotRunning/kNoPermission/kBadAnswer (with a message on stderr).
int runView(const std::string& socket, int timeout_ms, const std::string& request, RenderFn render,
            bool json, const Style& style);
/// kOk for an answer to render; otherwise says on stderr why there is none (no daemon, no
/// permission, an error answer) and returns the exit code for it.
int replyProblem(const Reply& reply);
/// The printing half of runView for an answer already received: the rendered view (or the JSON
/// with `json`); returns the view's verdict, or kBadAnswer when it cannot be rendered.
int printView(const std::string& body, RenderFn render, bool json, const Style& style);

}  // namespace gw::ctl
