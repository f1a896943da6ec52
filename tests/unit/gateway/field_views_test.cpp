// gatewayctl bad and check: the documents gatewayd writes (gateway/bad_input.h,
// gateway/check.h) rendered at 80 columns, with their exit codes.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "gateway/bad_input.h"
#include "gateway/check.h"
#include "gateway/ctl/client.h"
#include "gateway/ctl/render.h"

using namespace gw;

namespace {

void checkWidth(const std::string& text, size_t width) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) CHECK_MESSAGE(ctl::visibleWidth(line) <= width, line);
}

}  // namespace

TEST_CASE("bad: requests, per-device counts bounded, the document rendered at 80 columns") {
  CHECK(parseBadRequest("bad") == 20u);
  CHECK(parseBadRequest("bad 5") == 5u);
  CHECK(parseBadRequest("bad 999999") == kBadMaxLetters);
  CHECK(parseBadRequest("bad x") == 0u);  // malformed: answered with an error
  CHECK_FALSE(parseBadRequest("badge").has_value());

  BadDeviceCounts counts(2);
  for (const char* d : {"pump-1", "pump-2", "pump-1", "pump-3", "pump-4"}) counts.add(d);
  CHECK(counts.count("pump-1") == 2);
  CHECK(counts.count("pump-3") == 0);  // past the bound: summed in others()
  CHECK(counts.others() == 2);
  CHECK(counts.top(1) == std::vector<std::pair<std::string, std::uint64_t>>{{"pump-1", 2}});

  buffer::DeadLetter d;
  d.time = 1'795'256'130'123'000'000;
  d.source = "mqtt";
  d.where = "plant1/line3/a-device-with-a-very-long-name-indeed-0123456789/temperature";
  d.reason = "not_json";
  d.device = "a-device-with-a-very-long-name-indeed-0123456789";
  d.size = 12345;
  d.excerpt = buffer::escapeExcerpt(std::string(400, 'q') + "\x1b");
  const std::string doc = badJson({{"not_json", 3}}, counts, {d});
  const auto r = ctl::renderBad(doc, ctl::Style{false, 80});
  MESSAGE(r.text);
  CHECK(r.exit == ctl::kDegraded);
  checkWidth(r.text, 80);
  CHECK(r.text.find("3 bad messages since gatewayd started: not_json 3") != std::string::npos);
  CHECK(r.text.find("by device: pump-1 2, pump-2 1 (+2 from devices past the count limit)") !=
        std::string::npos);
  CHECK(r.text.find("  payload: qqqq") != std::string::npos);
  CHECK(r.text.find("10:15:30.123") != std::string::npos);

  const auto none = ctl::renderBad(badJson({}, BadDeviceCounts(), {}), ctl::Style{false, 80});
  CHECK(none.exit == ctl::kOk);
  CHECK(none.text == "no bad input since gatewayd started\n");
}

TEST_CASE("check: requests and the rendered results") {
  CHECK(parseCheckRequest("check") == 0u);
  CHECK(parseCheckRequest("check 7") == 7u);
  CHECK_FALSE(parseCheckRequest("check 0").has_value());
  CHECK_FALSE(parseCheckRequest("checks").has_value());

  const std::string doc =
      R"J({"id":1,"done":true,"timeout_ms":5000,"results":[)J"
      R"J({"kind":"source","name":"mqtt","target":"ssl://broker.plant1.example.com:8883",)J"
      R"J("state":"ok","detail":"TCP, TLS and CONNECT accepted","ms":12},)J"
      R"J({"kind":"sink","name":"kafka","target":"kafka1:9092,kafka2:9092,kafka3:9092",)J"
      R"J("state":"failed","detail":"kafka1:9092/bootstrap: Connect to ipv4#10.0.0.7:9092 )J"
      R"J(failed: Connection refused (after 0ms in state CONNECT)","ms":5004},)J"
      R"J({"kind":"sink","name":"file","target":"/var/lib/iot-gateway/archive",)J"
      R"J("state":"not tested","detail":"nothing to connect to","ms":0}]})J";
  const auto r = ctl::renderCheck(doc, ctl::Style{false, 80});
  MESSAGE(r.text);
  CHECK(r.exit == ctl::kDegraded);
  checkWidth(r.text, 80);
  CHECK(r.text.find("FAILED") != std::string::npos);
  CHECK(r.text.find("refused (after 0ms") != std::string::npos);  // wrapped, not cut
  CHECK(r.text.find("1 of 2 failed") != std::string::npos);
}

TEST_CASE("alerts: most severe first, a tags column, values labelled, undelivered with event") {
  const std::string doc =
      R"J({"rules":2,"firing":[)J"
      R"J({"rule":"sensor-silent","device":"pump-003","metric":"bearing_temp","tags":{"line":"2"},)J"
      R"J("severity":"warning","statistic":"no_data","value":65,"threshold":60,)J"
      R"J("time":"2026-11-21T10:00:00.000Z"},)J"
      R"J({"rule":"sensor-silent","device":"pump-003","metric":"bearing_temp","tags":{"line":"1"},)J"
      R"J("severity":"warning","statistic":"no_data","value":65,"threshold":60,)J"
      R"J("time":"2026-11-21T10:00:00.000Z"},)J"
      R"J({"rule":"overheat","device":"pump-7","metric":"bearing_temp","tags":{},)J"
      R"J("severity":"critical","statistic":"p95","value":91.5,"threshold":85,)J"
      R"J("time":"2026-11-21T10:00:00.000Z"}],"pending":[],"undelivered":[)J"
      R"J({"rule":"overheat","device":"pump-7","state":"resolved","time":"2026-11-21T10:05:00.000Z",)J"
      R"J("notifier":"pagerduty","attempts":3,"last_error":"HTTP 500"}]})J";
  const auto r = ctl::renderAlerts(doc, ctl::Style{false, 80});
  MESSAGE(r.text);
  checkWidth(r.text, 80);
  const auto critical = r.text.find("overheat"), line1 = r.text.find("line=1"),
             line2 = r.text.find("line=2");
  CHECK(critical < line1);
  CHECK(line1 < line2);
  CHECK(r.text.find("p95 91.5 > 85") != std::string::npos);
  CHECK(r.text.find("silent 1m 05s") != std::string::npos);
  CHECK(r.text.find("sensor-silent") != std::string::npos);  // the rule is never cut
  CHECK(r.text.find("resolve") != std::string::npos);
  CHECK(r.text.find("10:05:00") != std::string::npos);
}
