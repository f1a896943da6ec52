// gatewayctl's views: 80 columns whatever the daemon says, exit codes, colours only on request.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "gateway/ctl/client.h"
#include "gateway/ctl/render.h"

using namespace gw::ctl;

namespace {

std::string statusJson(bool kafka_up, const std::string& error, const std::string& target) {
  return R"({"daemon":{"version":"0.1.0","pid":42,"started":"2026-11-21T10:00:00.000Z","uptime_s":7384.5,"config":"/etc/iot-gateway/gateway.toml","reloads":1,"reload_failures":1,"metrics":null,"last_reload":{"time":"2026-11-21T11:00:00.000Z","ok":false,"error":")" +
         error +
         R"("}},"gateway":"plant1-line3","since":"2026-11-21T10:00:00.000Z","messages":1000,"readings":1234567,"rate_in":812.25,"bad_total":12,"bad":{"no_template":10,"not_json":2},"sources":[{"name":"mqtt","target":")" +
         target +
         R"(","up":false,"connects":3,"connection_failures":9,"session_present":true,"in_flight":0,"pending_acks":0,"last_error":")" +
         error + R"(","last_error_time":null}],"sinks":[{"name":"kafka","target":")" + target +
         R"(","up":)" + (kafka_up ? "true" : "false") +
         R"(,"sent":1234000,"retries":5,"rejected":0,"cursor":1,"backlog":567,"dropped":0,"age_p50_ms":12.5,"age_p99_ms":30.0,"oldest_unsent":null,"oldest_unsent_age_s":310.0,"rate_out":800.0,"last_error":")" +
         error +
         R"("},{"name":"timeseries","target":"http://victoria:8428/write","up":true,"sent":1234567,"retries":0,"rejected":0,"cursor":1,"backlog":0,"dropped":3,"age_p50_ms":1,"age_p99_ms":2,"oldest_unsent":null,"oldest_unsent_age_s":null,"rate_out":null,"last_error":""}],"journal":{"path":"/var/lib/iot-gateway/journal.db","last_seq":1,"rows":45678,"file_bytes":12897484,"used_bytes":1000,"max_size":536870912,"max_age_s":604800,"commits":5,"commit_failures":0,"pending":0,"backlog":567,"dropped":3,"oldest_unsent":null,"oldest_unsent_age_s":310.0,"moved_aside":null},"clock":{"devices":48,"out_of_bounds":1,"gateway_offset_ms":0.2}})";
}

void checkWidth(const std::string& text, size_t width) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    CHECK(visibleWidth(line) <= width);
  }
}

}  // namespace

TEST_CASE("status fits 80 columns, also with long errors and targets") {
  const std::string long_error(300, 'x');
  const std::string long_target = "ssl://" + std::string(150, 'h') + ":8883";
  for (bool color : {false, true}) {
    const auto r = renderStatus(statusJson(false, long_error, long_target), Style{color, 80});
    checkWidth(r.text, 80);
    CHECK(r.exit == kDegraded);
    CHECK(r.text.find("DOWN: mqtt, kafka") != std::string::npos);
    CHECK(r.text.find("1234567") != std::string::npos);
    CHECK((r.text.find("\033[") != std::string::npos) == color);
  }
  // Unicode device errors count as one column per character.
  const auto r = renderStatus(
      statusJson(true, std::string(100, 'e') + "\u00e9\u00e9", "tcp://b:1883"), Style{false, 80});
  checkWidth(r.text, 80);
  CHECK(r.exit == kDegraded);  // mqtt is down in this document
}

TEST_CASE("status exits 0 when every source and sink is up") {
  std::string j = statusJson(true, "", "tcp://broker:1883");
  const auto pos = j.find(R"("up":false)");  // the mqtt source
  j.replace(pos, 10, R"("up":true)");
  const auto r = renderStatus(j, Style{false, 80});
  CHECK(r.exit == kOk);
  CHECK(r.text.find("all sources and sinks up") != std::string::npos);
  CHECK(r.text.find("812/s") != std::string::npos);
  CHECK(r.text.find("up 2h 03m") != std::string::npos);
}

TEST_CASE("fitLine cuts with an ellipsis and keeps escapes whole") {
  CHECK(fitLine("abcdef", 10) == "abcdef");
  CHECK(fitLine("abcdefghijkl", 10) == "abcdefg...");
  CHECK(visibleWidth("\033[1;31mDOWN\033[0m") == 4);
  const std::string cut = fitLine("\033[31m" + std::string(50, 'z') + "\033[0m", 20);
  CHECK(visibleWidth(cut) == 20);
  CHECK(cut.find("\033[0m") != std::string::npos);
  CHECK(visibleWidth("\u00e9t\u00e9") == 3);
}

TEST_CASE("sensors, buffer, sinks, alerts render and give their exit codes") {
  const std::string sensors =
      R"({"gateway":{"offset_ms":0.5},"max_skew_ms":86400000,"devices":[{"device":"pump-7","reference":"broker","offset_ms":37000.2,"drift_ppm":200.1,"samples":10,"steps":0,"last_step":null,"converged":true,"out_of_bounds":false,"last_seen":"2026-11-21T10:00:00.000Z","rate":1.0},{"device":")" +
      std::string(120, 'd') +
      R"(","reference":"receive","offset_ms":-7200000,"drift_ppm":0,"samples":3,"steps":1,"last_step":null,"converged":true,"out_of_bounds":true,"last_seen":"2026-11-21T10:00:00.000Z","rate":null}]})";
  auto r = renderSensors(sensors, Style{false, 80});
  checkWidth(r.text, 80);
  CHECK(r.exit == kDegraded);
  CHECK(r.text.find("+37.00s") != std::string::npos);
  CHECK(r.text.find("-2h 00m") != std::string::npos);
  CHECK(r.text.find("SKEW") != std::string::npos);
  CHECK(r.text.find("+ means the device's clock is behind") != std::string::npos);

  const std::string buffer =
      R"({"journal":{"path":"/var/lib/iot-gateway/journal.db","last_seq":10,"rows":10,"file_bytes":4096,"used_bytes":4096,"max_size":1048576,"max_age_s":604800,"commits":3,"commit_failures":0,"pending":0,"backlog":5,"dropped":2,"oldest_unsent":null,"oldest_unsent_age_s":20,"moved_aside":null},"sinks":[{"name":"kafka","cursor":5,"backlog":5,"dropped":2,"oldest_unsent":null,"oldest_unsent_age_s":20}]})";
  r = renderBuffer(buffer, Style{false, 80});
  checkWidth(r.text, 80);
  CHECK(r.exit == kOk);
  CHECK(r.text.find("kafka") != std::string::npos);
  CHECK(r.text.find("2 unsent rows were dropped") != std::string::npos);  // past tense
  CHECK(r.text.find("Bring the sink back") != std::string::npos);         // what to do

  // Low on disk and a journal written back after it was deleted: said, with what to do.
  std::string low = buffer;
  const std::string tail = R"("moved_aside":null})";
  REQUIRE(low.find(tail) != std::string::npos);
  low.replace(
      low.find(tail), tail.size(),
      R"("moved_aside":null,"restores":2,"min_free":268435456,"disk_free":104857600,"low_disk":true})");
  r = renderBuffer(low, Style{false, 80});
  checkWidth(r.text, 80);
  CHECK(r.exit == kDegraded);
  CHECK(r.text.find("100.0 MiB free on its filesystem, buffer.min_free 256.0 MiB") !=
        std::string::npos);
  CHECK(r.text.find("below buffer.min_free") != std::string::npos);
  CHECK(r.text.find("deleted or moved away 2 times") != std::string::npos);

  const std::string sinks =
      R"({"sinks":[{"name":"kafka","target":"k:9092","up":false,"sent":1,"retries":2,"rejected":0,"cursor":1,"backlog":9,"dropped":0,"age_p50_ms":1,"age_p99_ms":2,"oldest_unsent":null,"oldest_unsent_age_s":12,"rate_out":0,"last_error":"Local: Broker transport failure"}]})";
  r = renderSinks(sinks, Style{false, 80});
  checkWidth(r.text, 80);
  CHECK(r.exit == kDegraded);
  CHECK(r.text.find("last error: Local: Broker transport failure") != std::string::npos);
  CHECK(r.text.find("delivery age p50 1.0 ms, p99 2.0 ms") != std::string::npos);

  r = renderAlerts(R"({"rules":0,"firing":[],"pending":[],"undelivered":[]})", Style{false, 80});
  CHECK(r.exit == kOk);
  r = renderAlerts(
      R"({"rules":2,"firing":[{"rule":"bearing-overheat","device":"pump-7","metric":"bearing_temp","severity":"critical","value":91.5,"time":"2026-11-21T10:00:00.000Z"}],"pending":[],"undelivered":[]})",
      Style{false, 80});
  CHECK(r.exit == kDegraded);
  CHECK(r.text.find("bearing-overheat") != std::string::npos);
  checkWidth(r.text, 80);
}

TEST_CASE("alerts: at 80 columns a typical metric and its tags are not cut") {
  // Issue 14: under RULE and SEVERITY columns, "bearing_temp" showed as "beari...".
  const std::string a1 =
      R"({"rule":"bearing-overheat","device":"pump-010","metric":"bearing_temp","tags":{"line":"l3","site":"plant1"},"severity":"critical","statistic":"p95","value":87.56,"threshold":85,"time":"2026-11-21T10:00:00.000Z"})";
  const std::string a2 =
      R"({"rule":"bearing-overheat","device":"pump-011","metric":"bearing_temp","tags":{"line":"l3","site":"plant1"},"severity":"critical","statistic":"p95","value":87.75,"threshold":85,"time":"2026-11-21T10:00:00.000Z"})";
  const std::string a3 =
      R"({"rule":"sensor-silent","device":"fan-07","metric":"vibration_rms","tags":{"line":"l3"},"severity":"warning","statistic":"no_data","value":75,"time":"2026-11-21T10:00:00.000Z"})";
  const Rendered r = renderAlerts(
      R"({"rules":2,"firing":[)" + a3 + "," + a1 + "," + a2 + R"(],"pending":[],"undelivered":[]})",
      Style{false, 80});
  checkWidth(r.text, 80);
  CHECK(r.exit == kDegraded);
  CHECK(r.text.find("...") == std::string::npos);
  // One line per rule, most severe first; then its series, whole.
  const auto crit = r.text.find("bearing-overheat (critical)\n");
  const auto warn = r.text.find("sensor-silent (warning)\n");
  REQUIRE(crit != std::string::npos);
  REQUIRE(warn != std::string::npos);
  CHECK(crit < warn);
  CHECK(r.text.find("bearing-overheat", crit + 1) == std::string::npos);  // named once
  CHECK(r.text.find("  pump-010  bearing_temp   line=l3,site=plant1  p95 87.56 > 85") !=
        std::string::npos);
  CHECK(r.text.find("  fan-07    vibration_rms  line=l3") != std::string::npos);
}

TEST_CASE("alerts: the configured rules are listed with their thresholds at 80 columns") {
  const std::string json =
      R"({"rules":3,"rule_list":[)"
      R"({"name":"bearing-overheat","device":"pump-*","metric":"bearing_temp","tags":{"line":"3"},"on":"p95","above":85.5,"clear_below":80,"for_s":30,"severity":"critical","notify":["pagerduty","webhook"]},)"
      R"({"name":"low-pressure","device":"*","metric":"pressure","tags":{},"on":"value","below":2,"clear_above":2,"severity":"warning","notify":[]},)"
      R"({"name":"pump-silent","device":"pump-*","metric":"*","tags":{},"on":"value","no_data_for_s":300,"severity":"error","notify":["pagerduty"]}],)"
      R"("firing":[],"pending":[],"undelivered":[]})";
  const Rendered r = renderAlerts(json, Style{false, 80});
  CHECK(r.exit == kOk);
  checkWidth(r.text, 80);
  CHECK(r.text.find("\nRULES\n") != std::string::npos);
  CHECK(r.text.find("RULE ") != std::string::npos);
  // One line per rule, in config order, each with its threshold.
  const auto hot = r.text.find("bearing-overheat"), low = r.text.find("low-pressure"),
             silent = r.text.find("pump-silent");
  REQUIRE(hot != std::string::npos);
  REQUIRE(low != std::string::npos);
  REQUIRE(silent != std::string::npos);
  CHECK(hot < low);
  CHECK(low < silent);
  const auto lineOf = [&](size_t at) {
    const size_t begin = r.text.rfind('\n', at) + 1;
    return r.text.substr(begin, r.text.find('\n', at) - begin);
  };
  const auto nextLine = [&](size_t at) { return lineOf(r.text.find('\n', at) + 1); };
  CHECK(lineOf(hot).find("line=3") != std::string::npos);
  CHECK(lineOf(hot).find("critical") != std::string::npos);
  CHECK(lineOf(hot).find("pagerduty,webhook") != std::string::npos);
  // Each rule's condition, whole, on the line under it.
  CHECK(nextLine(hot) == "  fires when p95 > 85.5 for 30s, clears when p95 < 80");
  CHECK(nextLine(low) == "  fires when value < 2, clears when value > 2");
  CHECK(lineOf(low).find("kafka only") != std::string::npos);
  CHECK(nextLine(silent) == "  fires when no reading for 5m 00s");

  // A daemon without rules (or an older one without the list) shows no RULES table.
  CHECK(renderAlerts(R"({"rules":0,"firing":[],"pending":[],"undelivered":[]})", Style{false, 80})
            .text.find("RULES") == std::string::npos);
}

TEST_CASE("an answer that is not JSON throws; an error answer is recognised") {
  CHECK_THROWS(renderStatus("not json", Style{}));
  CHECK(answerError(R"({"error":"unknown command 'x'"})") == "unknown command 'x'");
  CHECK(answerError(R"({"gateway":"a"})").empty());
}

TEST_CASE("formatting helpers") {
  CHECK(formatAge(0.25) == "250ms");
  CHECK(formatAge(42.7) == "42s");
  CHECK(formatAge(310) == "5m 10s");
  CHECK(formatAge(7384) == "2h 03m");
  CHECK(formatAge(3 * 86400 + 4 * 3600) == "3d 04h");
  CHECK(formatMillis(12.54) == "12.5 ms");
  CHECK(formatMillis(15871.9) == "15.9 s");
  CHECK(formatMillis(-250) == "-250.0 ms");
  CHECK(formatMillis(310000) == "5m 10s");
  CHECK(formatBytes(512) == "512 B");
  CHECK(formatBytes(12897484) == "12.3 MiB");
}

TEST_CASE("a failed reload is shown with its reason, wrapped rather than cut") {
  const std::string reason =
      "/tmp/a/very/long/folder/name/that/goes/on/and/on/for/a/while/gateway.toml:23: "
      "buffer.comit_interval: unknown key";
  std::string j = statusJson(true, reason, "tcp://b:1883");
  const auto r = renderStatus(j, Style{false, 80});
  INFO(r.text);
  CHECK(r.text.find("reload    FAILED at 2026-11-21T11:00:00Z") != std::string::npos);
  CHECK(r.text.find("buffer.comit_interval: unknown key") != std::string::npos);
  checkWidth(r.text, 80);
}

TEST_CASE("tail: readings oldest first on 80 columns; none is exit 1") {
  const std::string j =
      R"({"device":"pump-7","last_seq":12,"readings":[)"
      R"({"device":"pump-7","metric":"bearing_temp","tags":{"line":"line3"},"value":81.25,"time":"2026-11-21T10:15:30.123Z","device_time":"1970-01-01T00:00:05.000Z","reference":"receive","offset_ms":1795256125123.0,"seq":11},)"
      R"({"device":"pump-7","metric":"bearing_temp","tags":{"line":"line3"},"value":82.5,"time":"2026-11-21T10:15:31.123Z","device_time":"2026-11-21T10:15:31.100Z","reference":"broker","offset_ms":23.0,"seq":12}]})";
  const auto r = renderTail(j, Style{false, 80});
  INFO(r.text);
  CHECK(r.exit == kOk);
  checkWidth(r.text, 80);
  CHECK(r.text.find("pump-7: 2 latest readings, oldest first; times UTC 2026-11-21") == 0);
  CHECK(r.text.find("10:15:30.123") < r.text.find("10:15:31.123"));
  CHECK(r.text.find("1970-01-01T00:00:05.000Z") != std::string::npos);  // another day: in full
  CHECK(r.text.find("bearing_temp{lin...") != std::string::npos);       // cut to fit 80 columns
  CHECK(renderTail(j, Style{false, 0}).text.find("bearing_temp{line=line3}") != std::string::npos);
  CHECK(r.text.find("82.5") != std::string::npos);
  const auto none = renderTail(R"({"device":"x","last_seq":0,"readings":[]})", Style{false, 80});
  CHECK(none.exit == kDegraded);
  CHECK(none.text.find("no readings of x") != std::string::npos);
}

TEST_CASE("a sink's cause is wrapped at word boundaries, not cut") {
  const std::string sinks =
      R"({"sinks":[{"name":"kafka","target":"127.0.0.1:9","state":"down","up":false,"sent":0,"retries":0,"rejected":0,"cursor":0,"backlog":1,"dropped":0,"age_p50_ms":0,"age_p99_ms":0,"oldest_unsent":null,"oldest_unsent_age_s":3,"rate_out":0,"last_error":"127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused"}]})";
  const auto r = renderSinks(sinks, Style{false, 80});
  INFO(r.text);
  checkWidth(r.text, 80);
  CHECK(r.text.find("Connection refused") != std::string::npos);
  CHECK(r.text.find("...") == std::string::npos);
  CHECK(r.text.find("failed:\n    Connection refused") != std::string::npos);  // at a space
}
