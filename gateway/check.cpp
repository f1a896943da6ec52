#include "gateway/check.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <thread>

#include "core/json.h"
#include "gateway/status.h"

namespace gw {

std::optional<std::uint64_t> parseCheckRequest(std::string_view line) {
  if (line == "check") return 0;
  if (line.substr(0, 6) != "check ") return std::nullopt;
  line.remove_prefix(6);
  std::uint64_t id = 0;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), id);
  if (ec != std::errc() || p != line.data() + line.size() || id == 0) return std::nullopt;
  return id;
}

std::string CheckRunner::start(const config::Config& cfg, Nanos timeout) {
  if (run_) {
    std::lock_guard lock(run_->mu);
    if (run_->running > 0) return json(run_->id);
  }
  auto run = std::make_shared<Run>();
  run->id = next_id_++;
  run->timeout = timeout;
  std::vector<std::pair<std::size_t, Probe>> probes;
  const auto add = [&](const char* kind, const std::string& name, const std::string& target,
                       Probe probe) {
    Result r{kind, name, target};
    if (!probe) {
      r.state = "not tested";
      r.detail = "nothing to connect to";
    } else {
      probes.emplace_back(run->results.size(), std::move(probe));
    }
    run->results.push_back(std::move(r));
  };
  for (const auto& s : cfg.sources) add("source", s->name(), s->target(), s->probe());
  for (const auto& s : cfg.sinks)
    add("sink", s.config->name(), s.config->target(), s.config->probe());
  for (const auto& n : cfg.notify.notifiers) add("notifier", n->name(), n->target(), n->probe());
  run->running = probes.size();
  for (auto& [index, probe] : probes) {
    // Detached: a probe blocks for `timeout` at most and holds only the run and its own copy
    // of the options; a reload or a later run does not wait for it.
    std::thread([run, index = index, probe = std::move(probe), timeout] {
      const auto t0 = std::chrono::steady_clock::now();
      ProbeResult r;
      try {
        r = probe(timeout);
      } catch (const std::exception& e) {
        r = {false, e.what()};
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard lock(run->mu);
      Result& out = run->results[index];
      out.state = r.ok ? "ok" : "failed";
      out.detail = std::move(r.detail);
      out.ms = ms;
      --run->running;
    }).detach();
  }
  run_ = std::move(run);
  return json(run_->id);
}

std::string CheckRunner::json(std::uint64_t id) const {
  if (!run_ || run_->id != id)
    return requestErrorJson(fmt::format("check {}: no such run (start one with `check`)", id));
  std::lock_guard lock(run_->mu);
  std::string out =
      fmt::format(R"({{"id":{},"done":{},"timeout_ms":{},"results":[)", run_->id,
                  run_->running == 0 ? "true" : "false", run_->timeout / kNanosPerMilli);
  bool first = true;
  for (const auto& r : run_->results) {
    out += first ? R"({"kind":)" : R"(,{"kind":)";
    first = false;
    json::appendString(out, r.kind);
    out += R"(,"name":)";
    json::appendString(out, r.name);
    out += R"(,"target":)";
    json::appendString(out, r.target);
    out += R"(,"state":)";
    json::appendString(out, r.state);
    out += R"(,"detail":)";
    json::appendString(out, r.detail);
    out += fmt::format(R"(,"ms":{:.0f}}})", r.ms);
  }
  out += "]}";
  return out;
}

}  // namespace gw
