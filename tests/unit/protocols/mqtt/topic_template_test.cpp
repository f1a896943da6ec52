#include "protocols/mqtt/topic_template.h"

#include <doctest/doctest.h>

#include <string>

using gw::Series;
using gw::mqtt::topicMatchesFilter;
using gw::mqtt::TopicTemplate;

namespace {

TopicTemplate mustParse(std::string_view text) {
  std::string error;
  auto t = TopicTemplate::parse(text, error);
  INFO("template: " << std::string(text) << " error: " << error);
  REQUIRE(t.has_value());
  CHECK(error.empty());
  return *t;
}

std::string parseError(std::string_view text) {
  std::string error;
  auto t = TopicTemplate::parse(text, error);
  CHECK_FALSE(t.has_value());
  return error;
}

}  // namespace

TEST_CASE("match fills device, metric and tags in template order") {
  const TopicTemplate t = mustParse("plant1/{line}/{device}/{zone}/{metric}");
  CHECK(t.text() == "plant1/{line}/{device}/{zone}/{metric}");
  CHECK(t.capturesDevice());
  CHECK(t.capturesMetric());
  CHECK(t.filter() == "plant1/+/+/+/+");

  Series s;
  REQUIRE(t.match("plant1/line3/pump-7/north/bearing_temp", s));
  CHECK(s.device == "pump-7");
  CHECK(s.metric == "bearing_temp");
  REQUIRE(s.tags.size() == 2);
  CHECK(s.tags[0].first == "line");
  CHECK(s.tags[0].second == "line3");
  CHECK(s.tags[1].first == "zone");
  CHECK(s.tags[1].second == "north");

  // Reuse: a second match overwrites everything; spaces and odd characters pass through.
  REQUIRE(t.match("plant1/l 1/pump 7,a=b/z\"/m", s));
  CHECK(s.device == "pump 7,a=b");
  CHECK(s.metric == "m");
  CHECK(s.tags[0].second == "l 1");
  CHECK(s.tags[1].second == "z\"");

  // Tags that arrive before device, and the same series from two matches compares equal.
  const TopicTemplate u = mustParse("{site}/{device}/{metric}");
  Series a, b;
  b.tags.resize(5, {"stale", "stale"});
  REQUIRE(u.match("s1/d/m", a));
  REQUIRE(u.match("s1/d/m", b));
  CHECK(a == b);
  REQUIRE(b.tags.size() == 1);
  CHECK(b.tags[0] == std::pair<std::string, std::string>{"site", "s1"});
}

TEST_CASE("a topic that does not match leaves the series untouched") {
  const TopicTemplate t = mustParse("plant1/{line}/{device}/{metric}");
  Series s;
  s.device = "keep";
  s.metric = "keep";
  CHECK_FALSE(t.match("plant2/l/d/m", s));        // literal mismatch
  CHECK_FALSE(t.match("Plant1/l/d/m", s));        // literals are case-sensitive
  CHECK_FALSE(t.match("plant1/l/d", s));          // too few levels
  CHECK_FALSE(t.match("plant1/l/d/m/extra", s));  // too many levels
  CHECK_FALSE(t.match("plant1/l/d/m/", s));       // a trailing empty level is a level
  CHECK_FALSE(t.match("plant1//d/m", s));         // empty captured level
  CHECK_FALSE(t.match("plant1/l/d/", s));         // empty captured metric
  CHECK_FALSE(t.match("/plant1/l/d/m", s));
  CHECK_FALSE(t.match("", s));
  CHECK(s.device == "keep");
  CHECK(s.metric == "keep");
  CHECK(s.tags.empty());
}

TEST_CASE("literal levels, empty literal levels, and templates without device or metric") {
  const TopicTemplate t = mustParse("/a//{device}");
  CHECK(t.filter() == "/a//+");
  CHECK_FALSE(t.capturesMetric());
  Series s;
  s.metric = "old";
  REQUIRE(t.match("/a//d1", s));
  CHECK(s.device == "d1");
  CHECK(s.metric.empty());  // not captured: cleared, the caller fills it
  CHECK_FALSE(t.match("/a/x/d1", s));
  CHECK_FALSE(t.match("a//d1", s));

  // No {device}: allowed here, the config layer decides whether that is an error.
  const TopicTemplate m = mustParse("sensors/{metric}");
  CHECK_FALSE(m.capturesDevice());
  CHECK(m.capturesMetric());
  s.device = "old";
  REQUIRE(m.match("sensors/temp", s));
  CHECK(s.device.empty());
  CHECK(s.metric == "temp");

  const TopicTemplate lit = mustParse("a/b");
  CHECK(lit.filter() == "a/b");
  REQUIRE(lit.match("a/b", s));
  CHECK(s.tags.empty());
}

TEST_CASE("a final '#' matches zero or more levels") {
  const TopicTemplate t = mustParse("plant1/{device}/{metric}/#");
  CHECK(t.filter() == "plant1/+/+/#");
  Series s;
  REQUIRE(t.match("plant1/d/m", s));
  CHECK(s.device == "d");
  CHECK(s.metric == "m");
  REQUIRE(t.match("plant1/d/m/x", s));
  REQUIRE(t.match("plant1/d/m/x/y/z", s));
  REQUIRE(t.match("plant1/d/m/", s));
  CHECK(s.metric == "m");
  CHECK_FALSE(t.match("plant1/d", s));
  CHECK_FALSE(t.match("plant1//m/x", s));
  CHECK_FALSE(t.match("plant2/d/m/x", s));

  const TopicTemplate all = mustParse("#");
  CHECK(all.filter() == "#");
  CHECK(all.match("anything/at/all", s));
  CHECK_FALSE(all.match("", s));  // not a topic
}

TEST_CASE("'$' topics match a template only through a literal first level, like a filter") {
  Series s;
  CHECK_FALSE(mustParse("{device}/{metric}").match("$SYS/uptime", s));
  CHECK_FALSE(mustParse("#").match("$SYS/uptime", s));
  CHECK(mustParse("$SYS/{metric}").match("$SYS/uptime", s));
  CHECK(s.metric == "uptime");
  CHECK(mustParse("{device}/{metric}").match("d/$m", s));
  CHECK(s.metric == "$m");
}

TEST_CASE("parse errors name the level and what is wrong") {
  CHECK(parseError("plant1/{line/{device}") == "level 2 '{line': unbalanced '{'");
  CHECK(parseError("plant1/line}/{device}") == "level 2 'line}': unbalanced '}'");
  CHECK(parseError("a/{{device}") == "level 2 '{{device}': unbalanced '{'");
  CHECK(parseError("{device}/{device}") == "level 2 '{device}': capture 'device' appears twice");
  CHECK(parseError("{line}/{device}/{line}") == "level 3 '{line}': capture 'line' appears twice");
  CHECK(parseError("a/{metric}/{metric}") == "level 3 '{metric}': capture 'metric' appears twice");
  CHECK(parseError("plant1/+/{device}") ==
        "level 2 '+': '+' and '#' are filters; use {name} to capture a level");
  CHECK(parseError("plant1/a+b/{device}") ==
        "level 2 'a+b': '+' and '#' are filters; use {name} to capture a level");
  CHECK(parseError("plant1/a#/{device}") ==
        "level 2 'a#': '+' and '#' are filters; use {name} to capture a level");
  CHECK(parseError("plant1/#/{device}") == "level 2 '#': '#' must be the last level");
  CHECK(parseError("#/#") == "level 1 '#': '#' must be the last level");
  CHECK(parseError("plant1/{}/x") == "level 2 '{}': empty capture name");
  CHECK(parseError("dev-{device}") ==
        "level 1 'dev-{device}': a capture must be a whole level, like {name}");
  CHECK(parseError("{device}x") ==
        "level 1 '{device}x': a capture must be a whole level, like {name}");
  CHECK(parseError("{a}{b}") == "level 1 '{a}{b}': a capture must be a whole level, like {name}");
  CHECK(parseError("}{") == "level 1 '}{': a capture must be a whole level, like {name}");
  CHECK(parseError("x/{li ne}") ==
        "level 2 '{li ne}': a capture name may only hold letters, digits, '_' and '-'");
  CHECK(parseError("") == "empty template");
  CHECK(parseError(std::string_view("a/\0b", 4)) == "a topic cannot contain a NUL character");

  // The error string is reset by a successful parse.
  std::string error = "old";
  CHECK(TopicTemplate::parse("ok/{device}", error).has_value());
  CHECK(error.empty());
}

TEST_CASE("topicMatchesFilter follows the MQTT rules") {
  struct Case {
    const char* filter;
    const char* topic;
    bool matches;
  };
  const Case cases[] = {
      {"a/b/c", "a/b/c", true},
      {"a/b/c", "a/b", false},
      {"a/b", "a/b/c", false},
      {"a/b/c", "a/b/C", false},
      {"+", "a", true},
      {"+", "a/b", false},
      {"+", "/a", false},
      {"+/+", "/a", true},
      {"/+", "/a", true},
      {"a/+/c", "a/x/c", true},
      {"a/+/c", "a//c", true},  // '+' matches an empty level
      {"a/+/c", "a/x/y/c", false},
      {"a/+", "a", false},
      {"a/+", "a/", true},
      {"#", "a", true},
      {"#", "a/b/c", true},
      {"#", "/", true},
      {"sport/#", "sport", true},  // '#' includes the parent level
      {"sport/#", "sport/", true},
      {"sport/#", "sport/tennis/player1", true},
      {"sport/#", "sports", false},
      {"sport/tennis/player1/#", "sport/tennis/player1", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
      {"sport/tennis/#", "sport/tennisplayer1", false},
      {"sport/+/player1", "sport/tennis/player1", true},
      {"+/tennis/#", "sport/tennis", true},
      {"+/+/#", "a", false},
      {"+/#", "a", true},
      // Topics starting with '$' are not matched by a leading wildcard, but by a literal.
      {"#", "$SYS/broker/uptime", false},
      {"+/broker/uptime", "$SYS/broker/uptime", false},
      {"+/monitor/Clients", "$SYS/monitor/Clients", false},
      {"$SYS/#", "$SYS/broker/uptime", true},
      {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
      {"a/#", "a/$b", true},  // only the first character of the topic counts
      {"", "a", false},
      {"a", "", false},
  };
  for (const Case& c : cases) {
    INFO("filter '" << std::string(c.filter) << "' topic '" << std::string(c.topic) << "'");
    CHECK(topicMatchesFilter(c.filter, c.topic) == c.matches);
  }
}

TEST_CASE("the filter of a template delivers exactly the topics the template matches") {
  const char* templates[] = {"plant1/{line}/{device}/{metric}", "{device}/#", "a/{device}",
                             "/x/{device}/y/{metric}/#"};
  const char* topics[] = {"plant1/l/d/m", "plant1/l/d/m/x", "plant1/l/d", "a/d", "a/d/e", "a",
                          "/x/d/y/m",     "/x/d/y/m/n",     "/x/d/y",     "d",   "d/e/f"};
  for (const char* text : templates) {
    const TopicTemplate t = mustParse(text);
    for (const char* topic : topics) {
      INFO("template " << std::string(text) << " topic " << std::string(topic));
      Series s;
      // Topics with an empty level where the template captures are the one difference ('+'
      // matches an empty level, a capture does not).
      const bool empty_capture = std::string_view(text).front() == '{' && topic[0] == '/';
      CHECK(t.match(topic, s) == (topicMatchesFilter(t.filter(), topic) && !empty_capture));
    }
  }
}
