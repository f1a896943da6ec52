#include "gateway/stats_line.h"

#include <fmt/format.h>

#include "core/log.h"

namespace gw {
namespace {

/// "812/s"; "0.3/s" below 10 (a trickle is not 0); "-/s" in the first second (no rate yet).
std::string perSecond(const std::optional<double>& rate) {
  if (!rate) return "-/s";
  return *rate < 9.95 ? fmt::format("{:.1f}/s", *rate) : fmt::format("{:.0f}/s", *rate);
}

}  // namespace

std::string statsLine(const StatusSnapshot& s) {
  std::string out = "stats: in " + perSecond(s.counters.rate_in);
  for (const auto& src : s.sources)
    if (!src.up) out += fmt::format(", {} DOWN", src.name);
  const JournalStatus& j = s.journal;
  out += fmt::format(", journal {} rows (backlog {}", j.stats.rows, j.backlog);
  if (j.dropped > 0) out += fmt::format(", dropped {}", j.dropped);
  out += ")";
  if (j.commit_failures > 0) out += fmt::format(", {} commits failed", j.commit_failures);
  for (const auto& sink : s.sinks) {
    const ForwarderStatus& f = sink.forwarder;
    if (f.state == LinkState::kUp) {
      out += fmt::format(", {} up", f.name);
      if (sink.rate_out) out += " " + perSecond(sink.rate_out);
    } else {
      out += fmt::format(", {} {} (backlog {})", f.name,
                         f.state == LinkState::kDown ? "DOWN" : "connecting", sink.journal.backlog);
    }
  }
  if (s.windows) out += fmt::format(", windows {} open", s.windows->stats.open_windows);
  const AlertStatus& a = s.alerts;
  if (a.engine) {
    out += fmt::format(", alerts {} firing", a.counters.firing);
    if (a.counters.pending > 0) out += fmt::format(", {} pending", a.counters.pending);
  }
  for (const auto& n : a.notifiers)
    if (!n.up) out += fmt::format(", {} DOWN", n.name);
  out += fmt::format(", bad {}", s.counters.badTotal());
  if (s.clock.out_of_bounds > 0)
    out += fmt::format(", skewed clocks {}", s.clock.out_of_bounds);  // beyond clock.max_skew
  return out;
}

void logStats(const StatusSnapshot& s, bool json) {
  if (json) {
    log::info("stats {}", statsJson(s));
  } else {
    log::info("{}", statsLine(s));
  }
}

}  // namespace gw
