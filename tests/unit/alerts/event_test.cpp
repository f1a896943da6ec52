// dedup_key stability and limits; the Kafka alert record; the outbox round trip; the
// PagerDuty Events API v2 body, parsed back with simdjson.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>

#include "alerts/alert_event.h"
#include "alerts/pagerduty_notifier.h"
#include "test_print.h"

using namespace gw::alerts;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::Series;

namespace {

constexpr Nanos kT = 1'795'436'130'123'456'789;  // 2026-11-23T12:15:30.123456789Z

AlertEvent sample(AlertState state = AlertState::kFiring) {
  AlertEvent e;
  e.rule = "bearing-overheat";
  e.series = Series{"pump-7", "bearing_temp", {{"line", "3"}, {"zone", "north"}}};
  e.state = state;
  e.severity = Severity::kCritical;
  e.statistic = "p95";
  e.value = 91.25;
  e.threshold = state == AlertState::kFiring ? 85 : 80;
  e.time = kT;
  e.window = 10 * kNanosPerSecond;
  e.dedup_key = dedupKey("plant1-line3", e.rule, e.series);
  return e;
}

std::set<std::string> keysOf(simdjson::dom::object o) {
  std::set<std::string> keys;
  for (auto [k, v] : o) keys.insert(std::string(k));
  return keys;
}

const std::string kKey = "0123456789abcdef0123456789abcdef";

}  // namespace

TEST_CASE("dedup_key: readable, escaped, order-independent, stable") {
  const Series s{"pump-7", "bearing_temp", {{"zone", "north"}, {"line", "3"}}};
  CHECK(dedupKey("plant1-line3", "bearing-overheat", s) ==
        "plant1-line3/bearing-overheat/pump-7/bearing_temp/line=3,zone=north");
  // Tag order does not matter (sorted), tag content does.
  const Series swapped{"pump-7", "bearing_temp", {{"line", "3"}, {"zone", "north"}}};
  CHECK(dedupKey("g", "r", s) == dedupKey("g", "r", swapped));
  CHECK(dedupKey("g", "r", Series{"a", "m", {}}) == "g/r/a/m/");
  // Separators inside parts are escaped, so parts can never run into each other.
  const Series tricky{"pump 7/a,b=c", "temp%", {{"k=1", "v,2"}}};
  CHECK(dedupKey("g", "r", tricky) == "g/r/pump%207%2Fa%2Cb%3Dc/temp%25/k%3D1=v%2C2");
  CHECK(dedupKey("g", "r", Series{"a/b", "c", {}}) != dedupKey("g", "r", Series{"a", "b/c", {}}));
  CHECK(dedupKey("g", "r", Series{"ü", "m", {}}) == "g/r/%C3%BC/m/");
  // Different gateways never share keys.
  CHECK(dedupKey("g1", "r", s) != dedupKey("g2", "r", s));
}

TEST_CASE("dedup_key: long keys are cut to 255 with a stable hash") {
  const Series a{std::string(300, 'd'), "m", {}};
  Series b = a;
  b.metric = "n";
  const std::string ka = dedupKey("g", "r", a);
  const std::string kb = dedupKey("g", "r", b);
  CHECK(ka.size() == kMaxDedupKey);
  CHECK(kb.size() == kMaxDedupKey);
  CHECK(ka != kb);
  CHECK(ka.substr(0, 238) == kb.substr(0, 238));
  CHECK(ka[ka.size() - 17] == '~');
  // The hash is FNV-1a 64 of the full key (checked against an independent implementation):
  // the same on every build, host and restart.
  CHECK(ka.substr(ka.size() - 17) == "~41660f826d02d349");
  // Never cut inside a %XX escape.
  const std::string kc = dedupKey("gw", "r", Series{std::string(300, '/'), "m", {}});
  CHECK(kc.size() == kMaxDedupKey - 2);
  const std::string head = kc.substr(0, kc.size() - 17);
  CHECK((head.size() - 5) % 3 == 0);  // "gw/r/", then whole "%2F" triples
  CHECK(head.substr(head.size() - 3) == "%2F");
}

TEST_CASE("Kafka alert record: exactly the contract's fields") {
  const AlertEvent e = sample();
  const std::string j = alertJson(e);
  CHECK(j ==
        "{\"rule\":\"bearing-overheat\",\"device\":\"pump-7\",\"metric\":\"bearing_temp\","
        "\"tags\":{\"line\":\"3\",\"zone\":\"north\"},\"state\":\"firing\",\"severity\":"
        "\"critical\",\"statistic\":\"p95\",\"value\":91.25,\"threshold\":85,\"time\":"
        "\"2026-11-23T12:15:30.123Z\",\"dedup_key\":\"plant1-line3/bearing-overheat/pump-7/"
        "bearing_temp/line=3,zone=north\"}");
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  REQUIRE(!parser.parse(j).get_object().get(o));
  CHECK(keysOf(o) == std::set<std::string>{"rule", "device", "metric", "tags", "state", "severity",
                                           "statistic", "value", "threshold", "time", "dedup_key"});
  CHECK(alertJson(sample(AlertState::kResolved)).find("\"state\":\"resolved\"") !=
        std::string::npos);
}

TEST_CASE("outbox JSON round trip is exact; alert records parse too") {
  AlertEvent e = sample();
  e.series.device = "pump \"7\"\n\\";
  std::string j;
  appendOutboxJson(j, e);
  std::string err;
  const auto back = parseAlertJson(j, &err);
  REQUIRE_MESSAGE(back, err);
  CHECK(*back == e);

  const auto rounded = parseAlertJson(alertJson(e));
  REQUIRE(rounded);
  CHECK(rounded->time == kT - 456'789);  // milliseconds only
  CHECK(rounded->window == 0);

  AlertEvent nan = sample();
  nan.value = std::numeric_limits<double>::quiet_NaN();
  const auto n = parseAlertJson(alertJson(nan));
  REQUIRE(n);
  CHECK(std::isnan(n->value));

  CHECK_FALSE(parseAlertJson("not json", &err));
  CHECK(err.find("not JSON") != std::string::npos);
  CHECK_FALSE(parseAlertJson("{\"rule\":\"x\"}", &err));
  CHECK(err.find("missing") != std::string::npos);
  std::string bad = alertJson(e);
  bad.replace(bad.find("firing"), 6, "flying");
  CHECK_FALSE(parseAlertJson(bad, &err));
  CHECK(err == "unknown state \"flying\"");
}

TEST_CASE("summary lines") {
  CHECK(summary(sample()) ==
        "bearing-overheat: pump-7 bearing_temp [line=3 zone=north] p95 (10s) 91.25 > 85");
  AlertEvent r = sample(AlertState::kResolved);
  r.value = 79.5;
  r.statistic = "value";
  r.window = 0;
  r.series.tags.clear();
  CHECK(summary(r) == "resolved: bearing-overheat: pump-7 bearing_temp 79.5 < 80");
  AlertEvent s = sample();
  s.rule = "sensor-silent";
  s.statistic = "no_data";
  s.value = 75;
  s.threshold = 60;
  s.series.tags.clear();
  CHECK(summary(s) == "sensor-silent: pump-7 bearing_temp silent for 75s (no_data_for 1m)");
}

TEST_CASE("PagerDuty body: trigger carries the full v2 payload") {
  std::string body;
  appendPagerDutyBody(body, sample(), kKey, "plant1-line3");
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  REQUIRE(!parser.parse(body).get_object().get(o));
  CHECK(keysOf(o) ==
        std::set<std::string>{"routing_key", "event_action", "dedup_key", "client", "payload"});
  CHECK(std::string_view(o["routing_key"]) == kKey);
  CHECK(std::string_view(o["event_action"]) == "trigger");
  CHECK(std::string_view(o["dedup_key"]) == sample().dedup_key);
  simdjson::dom::object p = o["payload"];
  CHECK(keysOf(p) == std::set<std::string>{"summary", "source", "severity", "timestamp",
                                           "component", "group", "class", "custom_details"});
  CHECK(std::string_view(p["summary"]) == summary(sample()));
  CHECK(std::string_view(p["source"]) == "pump-7");
  CHECK(std::string_view(p["severity"]) == "critical");
  CHECK(std::string_view(p["timestamp"]) == "2026-11-23T12:15:30.123Z");
  CHECK(std::string_view(p["component"]) == "bearing_temp");
  CHECK(std::string_view(p["group"]) == "plant1-line3");
  CHECK(std::string_view(p["class"]) == "bearing-overheat");
  simdjson::dom::object d = p["custom_details"];
  CHECK(keysOf(d) == std::set<std::string>{"gateway", "rule", "device", "metric", "statistic",
                                           "value", "threshold", "window", "tags"});
  CHECK(std::string_view(d["statistic"]) == "p95");
  CHECK(double(d["value"]) == 91.25);
  CHECK(double(d["threshold"]) == 85);
  CHECK(std::string_view(d["window"]) == "10s");
  CHECK(std::string_view(d["tags"]["zone"]) == "north");

  AlertEvent raw = sample();
  raw.statistic = "value";
  raw.window = 0;
  body.clear();
  appendPagerDutyBody(body, raw, kKey, "gw");
  REQUIRE(!parser.parse(body).get_object().get(o));
  CHECK(o["payload"]["custom_details"]["window"].error() == simdjson::NO_SUCH_FIELD);
}

TEST_CASE("PagerDuty body: every severity maps to PagerDuty's enum") {
  simdjson::dom::parser parser;
  for (Severity s : {Severity::kCritical, Severity::kError, Severity::kWarning, Severity::kInfo}) {
    AlertEvent e = sample();
    e.severity = s;
    std::string body;
    appendPagerDutyBody(body, e, kKey, "gw");
    std::string_view sev;
    REQUIRE(!parser.parse(body)["payload"]["severity"].get_string().get(sev));
    CHECK(sev == toString(s));
  }
}

TEST_CASE("PagerDuty body: resolve needs only routing_key, event_action, dedup_key") {
  std::string body;
  appendPagerDutyBody(body, sample(AlertState::kResolved), kKey, "gw");
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  REQUIRE(!parser.parse(body).get_object().get(o));
  CHECK(keysOf(o) == std::set<std::string>{"routing_key", "event_action", "dedup_key"});
  CHECK(std::string_view(o["event_action"]) == "resolve");
}

TEST_CASE("PagerDuty body: summary cut to 1024 bytes on a UTF-8 boundary; empty device") {
  AlertEvent e = sample();
  e.series.device.clear();
  for (int i = 0; i < 600; ++i) e.series.device += "é";  // 2 bytes each
  e.series.device = "x" + e.series.device;               // odd offset: a cut would split one
  std::string body;
  appendPagerDutyBody(body, e, kKey, "gw");
  simdjson::dom::parser parser;
  std::string_view summary_text;
  REQUIRE(!parser.parse(body)["payload"]["summary"].get_string().get(summary_text));  // valid UTF-8
  CHECK(summary_text.size() <= kMaxSummary);
  CHECK(summary_text.size() >= kMaxSummary - 1);

  AlertEvent nodev = sample();
  nodev.series.device.clear();
  body.clear();
  appendPagerDutyBody(body, nodev, kKey, "plant1-line3");
  std::string_view source;
  REQUIRE(!parser.parse(body)["payload"]["source"].get_string().get(source));
  CHECK(source == "plant1-line3");
}

TEST_CASE("PagerDuty error text") {
  CHECK(pagerDutyError(R"x({"status":"invalid event","message":"Event object is invalid",)x"
                       R"x("errors":["Length of 'routing_key' is incorrect (should be 32 )x"
                       R"x(characters)","'payload.summary' is missing or blank"]})x") ==
        "Event object is invalid: Length of 'routing_key' is incorrect (should be 32 "
        "characters); 'payload.summary' is missing or blank");
  CHECK(pagerDutyError(R"({"status":"throttle event","message":"slow down"})") == "slow down");
  CHECK(pagerDutyError("  <html>Bad Gateway</html>\n") == "<html>Bad Gateway</html>");
}
