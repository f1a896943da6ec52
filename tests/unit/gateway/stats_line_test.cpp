// The periodic stats log line: short enough to read in journalctl, and what is wrong named.
#include "gateway/stats_line.h"

#include <doctest/doctest.h>

#include <string>

namespace {

gw::StatusSnapshot busy() {
  gw::StatusSnapshot s;
  s.counters.readings = 1234567;
  s.counters.rate_in = 812.4;
  s.counters.bad = {{"not_json", 2}, {"no_template", 10}};
  s.sources.push_back({"mqtt", "tcp://broker:1883", true, {}, "", 0});
  s.journal.stats.rows = 123456;
  s.journal.backlog = 0;
  gw::SinkStatus kafka;
  kafka.forwarder.name = "kafka";
  kafka.rate_out = 810.2;
  s.sinks.push_back(kafka);
  gw::SinkStatus ts;
  ts.forwarder.name = "timeseries";
  s.sinks.push_back(ts);  // up, no rate measured yet
  s.windows = gw::WindowStatus{};
  s.windows->stats.open_windows = 3100;
  s.alerts.engine = true;
  s.alerts.counters.firing = 2;
  return s;
}

}  // namespace

TEST_CASE("stats line: everything well in one short line") {
  const std::string line = gw::statsLine(busy());
  CHECK(line ==
        "stats: in 812/s, journal 123456 rows (backlog 0), kafka up 810/s, timeseries up, "
        "windows 3100 open, alerts 2 firing, bad 12");
  CHECK(line.size() <= 160);
}

TEST_CASE("stats line: what is down, dropped or off is named, still within a screen line") {
  gw::StatusSnapshot s = busy();
  s.counters.rate_in.reset();  // the first second
  s.sources[0].up = false;
  s.journal.backlog = 5678;
  s.journal.dropped = 7032;
  s.journal.commit_failures = 3;
  s.sinks[0].forwarder.state = gw::LinkState::kDown;
  s.sinks[0].forwarder.up = false;
  s.sinks[0].journal.backlog = 5678;
  s.sinks[1].forwarder.state = gw::LinkState::kConnecting;
  s.alerts.counters.pending = 4;
  gw::ForwarderStatus pager;
  pager.name = "notify.pagerduty";
  pager.up = false;
  s.alerts.notifiers.push_back(pager);
  s.clock.out_of_bounds = 1;
  const std::string line = gw::statsLine(s);
  CHECK(line ==
        "stats: in -/s, mqtt DOWN, journal 123456 rows (backlog 5678, dropped 7032), 3 commits "
        "failed, kafka DOWN (backlog 5678), timeseries connecting (backlog 0), windows 3100 "
        "open, alerts 2 firing, 4 pending, notify.pagerduty DOWN, bad 12, skewed clocks 1");
  // Everything at once is the worst case; a line of the usual shape stays far shorter.
  CHECK(line.size() <= 260);
}

TEST_CASE("stats line: without windows or alert rules their parts are left out") {
  gw::StatusSnapshot s = busy();
  s.windows.reset();
  s.alerts.engine = false;
  s.counters.rate_in = 0.25;  // a trickle shows as one, not as 0/s
  s.sinks[0].rate_out = 9.96;
  CHECK(gw::statsLine(s) ==
        "stats: in 0.2/s, journal 123456 rows (backlog 0), kafka up 10/s, timeseries up, bad 12");
}
