#include "gateway/ctl/tail_cmd.h"

#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "gateway/ctl/client.h"
#include "gateway/ctl/view_cmd.h"
#include "gateway/tail.h"

namespace gw::ctl {
namespace {

/// The highest seq among the answer's readings (where --follow continues), or `after`.
std::uint64_t lastSeqOf(const std::string& body, std::uint64_t after) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) return after;
  simdjson::dom::array readings;
  if (doc["readings"].get(readings)) return after;
  for (auto r : readings) {
    std::uint64_t seq = 0;
    if (!r["seq"].get(seq) && seq > after) after = seq;
  }
  return after;
}

}  // namespace

int runTail(const std::string& socket, int timeout_ms, const TailOptions& o, const Style& style) {
  TailRequest req{o.device, 0, o.lines};
  bool first = true;
  int exit = kOk;
  for (;;) {
    const Reply reply = request(socket, tailRequestLine(req), timeout_ms);
    if (const int problem = replyProblem(reply); problem != kOk) return problem;
    const std::uint64_t next = lastSeqOf(reply.body, req.after);
    if (o.json) {
      if (first || next > req.after) std::printf("%s\n", reply.body.c_str());
      exit = next > 0 ? kOk : kDegraded;
    } else {
      Rendered r;
      try {
        r = renderTail(reply.body, style, first || req.after == 0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "gatewayctl: %s\n", e.what());
        return kBadAnswer;
      }
      std::fwrite(r.text.data(), 1, r.text.size(), stdout);
      exit = r.exit;
    }
    std::fflush(stdout);
    if (!o.follow) return exit;
    first = false;
    req.after = next;
    req.limit = kTailMax;  // everything newer, from now on
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace gw::ctl
