#include "gateway/ctl/top_cmd.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <thread>

#include "core/time.h"
#include "gateway/ctl/client.h"

namespace gw::ctl {
namespace {

/// "hh:mm:ss" of the wall clock, UTC.
std::string clockNow() {
  const std::string t = formatRfc3339Millis(wallNow());
  return t.size() >= 19 ? t.substr(11, 8) : t;
}

}  // namespace

int runTop(const std::string& socket, int timeout_ms, const TopOptions& o, const Style& style) {
  for (;;) {
    Reply status = request(socket, "status", timeout_ms);
    Reply alerts = status.exit == kOk ? request(socket, "alerts", timeout_ms) : status;
    const Reply& failed = status.exit != kOk ? status : alerts;
    if (failed.exit != kOk) {
      std::fprintf(stderr, "gatewayctl: %s\n", failed.message.c_str());
      return failed.exit;
    }
    Rendered frame;
    try {
      frame = renderTop(status.body, alerts.body, style, clockNow());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gatewayctl: %s\n", e.what());
      return kBadAnswer;
    }
    if (!o.once) std::fputs("\033[H\033[2J", stdout);  // home, clear: the frame in place
    std::fwrite(frame.text.data(), 1, frame.text.size(), stdout);
    std::fflush(stdout);
    if (o.once) return frame.exit;
    std::this_thread::sleep_for(std::chrono::duration<double>(o.interval_s));
  }
}

}  // namespace gw::ctl
