// Rule matching (device/metric globs, tag matchers) and the validation messages the config
// layer will prefix with `file:line:`.
#include "alerts/rule.h"

#include <doctest/doctest.h>

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "test_print.h"

using namespace gw::alerts;
using gw::Series;

namespace {

std::map<std::string, std::string> errorsOf(const Rule& r,
                                            std::optional<std::span<const std::string>> n = {}) {
  std::map<std::string, std::string> out;
  for (const RuleError& e : validate(r, n)) out[e.key] += e.message;
  return out;
}

Rule overheat() {
  Rule r;
  r.name = "bearing-overheat";
  r.device = "pump-*";
  r.metric = "bearing_temp";
  r.on = "p95";
  r.above = 85;
  r.clear_below = 80;
  r.for_duration = 20 * gw::kNanosPerSecond;
  r.severity = "critical";
  r.notify = {"pagerduty"};
  return r;
}

}  // namespace

TEST_CASE("glob: * and ? with escapes") {
  CHECK(globMatch("*", ""));
  CHECK(globMatch("*", "anything"));
  CHECK(globMatch("pump-*", "pump-7"));
  CHECK(globMatch("pump-*", "pump-"));
  CHECK_FALSE(globMatch("pump-*", "pum-7"));
  CHECK(globMatch("pump-?", "pump-7"));
  CHECK_FALSE(globMatch("pump-?", "pump-17"));
  CHECK(globMatch("*-7", "pump-7"));
  CHECK(globMatch("p*m*-*7", "pump-17"));
  CHECK(globMatch("*a*b*c*", "xxaxxbxxcxx"));
  CHECK_FALSE(globMatch("*a*b*c*", "xxaxxcxxbxx"));
  CHECK(globMatch("exact", "exact"));
  CHECK_FALSE(globMatch("exact", "exactly"));
  CHECK_FALSE(globMatch("exact", "exac"));
  CHECK(globMatch("a\\*b", "a*b"));
  CHECK_FALSE(globMatch("a\\*b", "axxb"));
  CHECK(globMatch("a\\?", "a?"));
  CHECK_FALSE(globMatch("a\\?", "ab"));
  CHECK(globMatch("rack\\[1\\]", "rack[1]"));
  // Pathological backtracking stays fast (greedy with one backtrack point).
  CHECK_FALSE(globMatch("*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST_CASE("glob: invalid patterns are explained") {
  CHECK(checkGlob("pump-*").empty());
  CHECK(checkGlob("rack\\[1\\]").empty());
  CHECK(checkGlob("").find("empty") != std::string::npos);
  CHECK(checkGlob("pump-[0-9]").find("'[' at position 6 is not supported") != std::string::npos);
  CHECK(checkGlob("{a,b}").find("'{'") != std::string::npos);
  CHECK(checkGlob("trailing\\").find("lone '\\'") != std::string::npos);
  CHECK(checkGlob("tab\there").find("control character") != std::string::npos);
}

TEST_CASE("rule matching: device, metric and tags") {
  Rule r = overheat();
  r.tags = {{"line", "3"}, {"zone", "n*"}};
  Series s{"pump-7", "bearing_temp", {{"line", "3"}, {"zone", "north"}}};
  CHECK(matches(r, s));
  CHECK_FALSE(matches(r, Series{"fan-7", "bearing_temp", s.tags}));
  CHECK_FALSE(matches(r, Series{"pump-7", "bearing_temp2", s.tags}));
  CHECK_FALSE(matches(r, Series{"pump-7", "bearing_temp", {{"line", "4"}, {"zone", "north"}}}));
  CHECK_FALSE(matches(r, Series{"pump-7", "bearing_temp", {{"line", "3"}, {"zone", "south"}}}));
  // A missing tag never matches, not even with "*".
  r.tags = {{"zone", "*"}};
  CHECK_FALSE(matches(r, Series{"pump-7", "bearing_temp", {{"line", "3"}}}));
  CHECK(matches(r, Series{"pump-7", "bearing_temp", {{"line", "3"}, {"zone", ""}}}));
  // Extra tags on the series do not matter.
  r.tags.clear();
  CHECK(matches(r, s));
}

TEST_CASE("statistic names") {
  for (const char* ok :
       {"count", "min", "max", "avg", "sum", "stddev", "first", "last", "p95", "p50", "p99", "p1"})
    CHECK_MESSAGE(isKnownStatistic(ok), ok);
  for (const char* bad : {"value", "p0", "p100", "p05", "mean", "", "P95", "p9x"})
    CHECK_MESSAGE(!isKnownStatistic(bad), bad);
}

TEST_CASE("validate: a good rule and the sketch's silent-sensor rule pass") {
  CHECK(validate(overheat()).empty());
  Rule silent;
  silent.name = "sensor-silent";
  silent.no_data_for = 60 * gw::kNanosPerSecond;
  silent.notify = {"pagerduty", "ops"};
  const std::vector<std::string> notifiers = {"pagerduty", "ops"};
  CHECK(validate(silent, notifiers).empty());
}

TEST_CASE("validate: precise errors") {
  SUBCASE("no threshold and no no_data_for") {
    Rule r = overheat();
    r.above.reset();
    r.clear_below.reset();
    const auto e = errorsOf(r);
    REQUIRE(e.count("above") == 1);
    CHECK(e.at("above") == "a rule needs a threshold (above or below) or no_data_for");
  }
  SUBCASE("clear threshold on the wrong side") {
    Rule r = overheat();
    r.clear_below = 90;
    CHECK(errorsOf(r).at("clear_below") ==
          "90 is above the trigger threshold above = 85; it must be at most that");
    Rule b;
    b.name = "too-cold";
    b.below = 5;
    b.clear_above = 2;
    CHECK(errorsOf(b).at("clear_above") ==
          "2 is below the trigger threshold below = 5; it must be at least that");
  }
  SUBCASE("clear key of the other direction") {
    Rule r = overheat();
    r.clear_below.reset();
    r.clear_above = 80;
    CHECK(errorsOf(r).at("clear_above").find("an `above` rule clears with clear_below") !=
          std::string::npos);
    Rule b;
    b.name = "too-cold";
    b.below = 5;
    b.clear_below = 7;
    CHECK(errorsOf(b).at("clear_below").find("clears with clear_above") != std::string::npos);
  }
  SUBCASE("clear equal to the trigger is fine (no hysteresis)") {
    Rule r = overheat();
    r.clear_below = 85;
    CHECK(validate(r).empty());
  }
  SUBCASE("both directions, or threshold with no_data_for") {
    Rule r = overheat();
    r.below = 10;
    CHECK(errorsOf(r).at("below").find("not both") != std::string::npos);
    Rule n = overheat();
    n.no_data_for = 60 * gw::kNanosPerSecond;
    CHECK(errorsOf(n).at("no_data_for").find("separate rule") != std::string::npos);
  }
  SUBCASE("bad severity") {
    Rule r = overheat();
    r.severity = "fatal";
    CHECK(errorsOf(r).at("severity") == "\"fatal\" is not one of critical, error, warning, info");
  }
  SUBCASE("bad globs, per key") {
    Rule r = overheat();
    r.device = "pump-[1-3]";
    r.metric = "";
    r.tags = {{"line", "{3,4}"}, {"", "x"}};
    const auto e = errorsOf(r);
    CHECK(e.at("device").find("'[' at position 6") != std::string::npos);
    CHECK(e.at("metric").find("empty") != std::string::npos);
    CHECK(e.at("tags.line").find("'{'") != std::string::npos);
    CHECK(e.at("tags").find("tag name must not be empty") != std::string::npos);
  }
  SUBCASE("unknown statistic, name rules, durations") {
    Rule r = overheat();
    r.on = "mean";
    r.name = "bad name/1";
    r.for_duration = -1;
    r.min_retrigger = -1;
    const auto e = errorsOf(r);
    CHECK(e.at("on").find("unknown statistic \"mean\"") != std::string::npos);
    CHECK(e.at("name").find("only letters") != std::string::npos);
    CHECK(e.at("for") == "must not be negative");
    CHECK(e.at("min_retrigger") == "must not be negative");
    r.name = "";
    CHECK(errorsOf(r).at("name") == "must not be empty");
    r.name = std::string(65, 'x');
    CHECK(errorsOf(r).at("name") == "at most 64 characters");
  }
  SUBCASE("for on a no_data_for rule") {
    Rule r;
    r.name = "silent";
    r.no_data_for = 60 * gw::kNanosPerSecond;
    r.for_duration = 10 * gw::kNanosPerSecond;
    CHECK(errorsOf(r).at("for").find("does not apply") != std::string::npos);
  }
  SUBCASE("non-finite thresholds") {
    Rule r = overheat();
    r.above = std::numeric_limits<double>::infinity();
    CHECK(errorsOf(r).at("above") == "must be a finite number");
  }
  SUBCASE("unknown notifier, listed twice") {
    Rule r = overheat();
    r.notify = {"pagerduty", "opz", "pagerduty"};
    const std::vector<std::string> notifiers = {"pagerduty", "ops"};
    const auto e = errorsOf(r, notifiers);
    CHECK(e.at("notify").find("unknown notifier \"opz\" (configured: pagerduty, ops)") !=
          std::string::npos);
    CHECK(e.at("notify").find("\"pagerduty\" is listed twice") != std::string::npos);
    // Without the list of notifiers, names are not checked.
    r.notify = {"opz"};
    CHECK(validate(r).empty());
  }
}

TEST_CASE("validateRules: index prefixes and unique names") {
  std::vector<Rule> rules = {overheat(), overheat()};
  rules[1].severity = "loud";
  const auto errors = validateRules(rules);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].key == "alert[1].severity");
  CHECK(errors[1].key == "alert[1].name");
  CHECK(errors[1].message.find("must be unique") != std::string::npos);
}

TEST_CASE("severity round trip") {
  for (Severity s : {Severity::kCritical, Severity::kError, Severity::kWarning, Severity::kInfo})
    CHECK(parseSeverity(toString(s)) == s);
  CHECK_FALSE(parseSeverity("Critical"));
}
