// The status JSON writer: the documents gatewayctl, the tests and scripts/demo read (keys,
// value types and number formats are a contract).
#include <doctest/doctest.h>

#include <string>

#include "gateway/status.h"

namespace {

gw::StatusSnapshot sample() {
  gw::StatusSnapshot s;
  s.gateway_id = "gw-1";
  s.wall = *gw::parseRfc3339("2026-11-21T10:00:10.000Z");
  s.since = *gw::parseRfc3339("2026-11-21T10:00:00.000Z");
  s.counters.messages = 5;
  s.counters.readings = 7;
  s.counters.bad = {{"not_json", 1}};
  gw::ComponentStatus mqtt;
  mqtt.name = "mqtt";
  mqtt.target = "tcp://b:1883";
  mqtt.figures = {{"messages", 5}, {"session_present", 1, gw::Figure::Kind::kFlag}};
  s.sources.push_back(mqtt);
  gw::SinkStatus kafka;
  kafka.forwarder.name = "kafka";
  kafka.forwarder.sent = 6;
  kafka.forwarder.age_p50_ms = 1.25;
  kafka.target = "k:9092";
  kafka.journal.cursor = 6;
  kafka.journal.backlog = 1;
  kafka.journal.oldest_unsent = *gw::parseRfc3339("2026-11-21T10:00:07.500Z");
  kafka.rate_out = 2.0 / 3;
  s.sinks.push_back(kafka);
  return s;
}

}  // namespace

TEST_CASE("status json: the sinks view") {
  CHECK(
      gw::statusJson(gw::StatusView::kSinks, sample()) ==
      R"({"sinks":[{"name":"kafka","target":"k:9092","state":"up","up":true,"sent":6,)"
      R"("retries":0,"rejected":0,"cursor":6,"backlog":1,"dropped":0,"age_p50_ms":1.2,)"
      R"("age_p99_ms":0.0,"oldest_unsent":"2026-11-21T10:00:07.500Z","oldest_unsent_age_s":2.500,)"
      R"("rate_out":0.67,"last_error":""}]})");
}

TEST_CASE("status json: the status view, with the daemon's part first") {
  auto s = sample();
  gw::DaemonStatus d;
  d.version = "1.0";
  d.pid = 42;
  d.started = s.since;
  d.now = s.wall;
  d.config_file = "/etc/gw.toml";
  s.daemon = d;
  const std::string json = gw::statusJson(gw::StatusView::kStatus, s);
  CHECK(json.rfind(R"({"daemon":{"version":"1.0","pid":42,"started":"2026-11-21T10:00:00.000Z",)"
                   R"("uptime_s":10.000,"config":"/etc/gw.toml","reloads":0,"reload_failures":0,)"
                   R"("metrics":null,"last_reload":null},"gateway":"gw-1",)",
                   0) == 0);
  CHECK(json.find(R"("messages":5,"readings":7,"rate_in":null,"bad_total":1,"bad":{"not_json":1},)"
                  R"("sources":[{"name":"mqtt","target":"tcp://b:1883","up":true,"messages":5,)"
                  R"("session_present":true,"last_error":"","last_error_time":null}],)") !=
        std::string::npos);
  CHECK(
      json.find(
          R"("clock":{"devices":0,"out_of_bounds":0,"out_of_bounds_devices":[],"gateway_offset_ms":0.000},"limits":{"max_series":0,)") !=
      std::string::npos);
}

TEST_CASE("status json: the stats line keeps its keys; flags are numbers there") {
  const std::string json = gw::statsJson(sample());
  CHECK(json.rfind(R"({"messages":5,"readings":7,"bad":{"not_json":1},"journal":{"last_seq":0,)",
                   0) == 0);
  CHECK(json.find(R"("mqtt":{"up":true,"messages":5,"session_present":1},"sinks":{"kafka":)") !=
        std::string::npos);
  CHECK(json.find(R"("notifiers")") == std::string::npos);  // none configured
}

TEST_CASE("status json: alerts, undelivered entries carry their delivery state") {
  gw::StatusSnapshot s;
  s.alerts.rules = 1;
  gw::UndeliveredAlert u;
  u.event.rule = "hot";
  u.event.notify = {"pager"};
  u.notifier = "pager";
  u.attempts = 3;
  u.last_error = "503";
  s.alerts.undelivered.push_back(u);
  const std::string json = gw::statusJson(gw::StatusView::kAlerts, s);
  CHECK(
      json.rfind(
          R"({"rules":1,"rule_list":[],"firing":[],"pending":[],"pending_count":0,"undelivered":[{"rule":"hot",)",
          0) == 0);
  CHECK(
      json.find(
          R"(,"notifier":"pager","attempts":3,"last_error":"503"}],"notifiers":[],"firing_total":0})") !=
      std::string::npos);
}

TEST_CASE("status json: an unknown command") {
  CHECK(gw::parseStatusView("nope") == std::nullopt);
  CHECK(gw::unknownCommandJson("nope") == R"({"error":"unknown command 'nope'"})");
}

TEST_CASE("status json: alerts list the configured rules with their effective thresholds") {
  gw::StatusSnapshot s;
  s.alerts.rules = 2;
  gw::alerts::Rule hot;
  hot.name = "bearing-overheat";
  hot.device = "pump-*";
  hot.metric = "bearing_temp";
  hot.tags = {{"line", "3"}};
  hot.on = "p95";
  hot.above = 85.5;
  hot.clear_below = 80;
  hot.for_duration = 30 * gw::kNanosPerSecond;
  hot.severity = "critical";
  hot.notify = {"pagerduty"};
  gw::alerts::Rule silent;
  silent.name = "silent";
  silent.below = 2;  // clear_above defaults to below
  silent.no_data_for = 300 * gw::kNanosPerSecond;
  s.alerts.rule_list = {hot, silent};
  const std::string json = gw::statusJson(gw::StatusView::kAlerts, s);
  CHECK(json.find(
            R"("rule_list":[{"name":"bearing-overheat","device":"pump-*","metric":"bearing_temp",)"
            R"("tags":{"line":"3"},"on":"p95","above":85.5,"clear_below":80,"for_s":30,)"
            R"("severity":"critical","notify":["pagerduty"]},)"
            R"({"name":"silent","device":"*","metric":"*","tags":{},"on":"value","below":2,)"
            R"("clear_above":2,"no_data_for_s":300,"severity":"warning","notify":[]}],)") !=
        std::string::npos);
}
