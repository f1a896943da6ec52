#include "gateway/ctl/view_cmd.h"

#include <cstdio>
#include <exception>

#include "gateway/ctl/client.h"

namespace gw::ctl {

int runView(const std::string& socket, int timeout_ms, const std::string& request, RenderFn render,
            bool json, const Style& style) {
  const Reply reply = ctl::request(socket, request, timeout_ms);
  if (const int problem = replyProblem(reply); problem != kOk) return problem;
  return printView(reply.body, render, json, style);
}

int replyProblem(const Reply& reply) {
  if (reply.exit != kOk) {
    std::fprintf(stderr, "gatewayctl: %s\n", reply.message.c_str());
    return reply.exit;
  }
  if (const std::string err = answerError(reply.body); !err.empty()) {
    std::fprintf(stderr, "gatewayctl: gatewayd answered: %s\n", err.c_str());
    return kBadAnswer;
  }
  return kOk;
}

int printView(const std::string& body, RenderFn render, bool json, const Style& style) {
  Rendered out;
  try {
    out = render(body, style);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gatewayctl: %s\n", e.what());
    return kBadAnswer;
  }
  if (json)
    std::printf("%s\n", body.c_str());
  else
    std::fwrite(out.text.data(), 1, out.text.size(), stdout);
  std::fflush(stdout);
  return out.exit;
}

}  // namespace gw::ctl
