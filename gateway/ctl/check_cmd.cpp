#include "gateway/ctl/check_cmd.h"

#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "gateway/ctl/client.h"
#include "gateway/ctl/view_cmd.h"

namespace gw::ctl {
namespace {

struct RunState {
  std::uint64_t id = 0;
  bool done = false;
  std::int64_t timeout_ms = 0;
};

RunState stateOf(const std::string& body) {
  RunState s;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) return s;
  if (doc["id"].get(s.id)) s.id = 0;
  if (doc["done"].get(s.done)) s.done = false;
  if (doc["timeout_ms"].get(s.timeout_ms)) s.timeout_ms = 5000;
  return s;
}

}  // namespace

int runCheck(const std::string& socket, int timeout_ms, bool json, const Style& style) {
  std::string line = "check";
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const Reply reply = request(socket, line, timeout_ms);
    if (reply.exit != kOk || !answerError(reply.body).empty())
      return runView(socket, timeout_ms, line, renderCheck, json, style);  // says what failed
    const RunState s = stateOf(reply.body);
    const auto waited = std::chrono::steady_clock::now() - start;
    if (s.done || s.id == 0 || waited > std::chrono::milliseconds(s.timeout_ms + 5000))
      return printView(reply.body, renderCheck, json, style);
    line = "check " + std::to_string(s.id);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace gw::ctl
