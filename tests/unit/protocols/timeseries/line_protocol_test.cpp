#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "protocols/timeseries/timeseries_sink.h"
#include "test_http.h"

using gw::ReadingRecord;
using gw::Series;
using gw::timeseries::appendLineProtocol;
using gw::timeseries::test::parseLine;

namespace {

constexpr gw::Nanos kT = 1'700'000'000'123'456'789;

std::string line(const Series& s, double value = 21.5, gw::Nanos t = kT) {
  ReadingRecord r;
  const gw::InternedSeries interned(s);
  r.series = &interned;
  r.value = value;
  r.event_time = t;
  std::string out;
  appendLineProtocol(out, r);
  return out;
}

}  // namespace

TEST_CASE("line protocol: plain reading") {
  const Series s{"pump7", "temperature", {{"site", "north"}, {"line", "2"}}};
  CHECK(line(s) == "temperature,device=pump7,site=north,line=2 value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: appends to the buffer") {
  const Series s{"d", "m", {}};
  ReadingRecord r;
  const gw::InternedSeries interned(s);
  r.series = &interned;
  r.value = 1;
  r.event_time = 5;
  std::string out = "x\n";
  appendLineProtocol(out, r);
  appendLineProtocol(out, r);
  CHECK(out == "x\nm,device=d value=1 5\nm,device=d value=1 5\n");
}

TEST_CASE("line protocol: field value is always a float") {
  const Series s{"d", "m", {}};
  CHECK(line(s, 21.0) == "m,device=d value=21 1700000000123456789\n");  // no `i`: a float
  CHECK(line(s, -0.5) == "m,device=d value=-0.5 1700000000123456789\n");
  CHECK(line(s, 1e20) == "m,device=d value=1e+20 1700000000123456789\n");
  CHECK(line(s, 0.1) == "m,device=d value=0.1 1700000000123456789\n");
  CHECK(line(s, 1.0 / 3) == "m,device=d value=0.3333333333333333 1700000000123456789\n");
}

TEST_CASE("line protocol: measurement escapes comma and space, not equals") {
  const Series s{"d", "rpm x,y=z", {}};
  CHECK(line(s) == "rpm\\ x\\,y=z,device=d value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: tag keys and values escape comma, equals, space") {
  const Series s{"d", "m", {{"a b,c=d", "e,f g=h"}}};
  CHECK(line(s) == "m,device=d,a\\ b\\,c\\=d=e\\,f\\ g\\=h value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: device `pump 7,a=b` stays one tag") {
  const Series s{"pump 7,a=b", "temp", {}};
  const std::string out = line(s);
  CHECK(out == "temp,device=pump\\ 7\\,a\\=b value=21.5 1700000000123456789\n");
  const auto p = parseLine(out.substr(0, out.size() - 1));
  REQUIRE(p);
  REQUIRE(p->tags.size() == 1);
  CHECK(p->tags[0].first == "device");
  CHECK(p->tags[0].second == "pump 7,a=b");
}

TEST_CASE("line protocol: backslashes are doubled, so a trailing one cannot escape") {
  CHECK(line(Series{"a\\b", "m", {}}) == "m,device=a\\\\b value=21.5 1700000000123456789\n");
  CHECK(line(Series{"x\\", "m\\", {{"k\\", "v"}}}) ==
        "m\\\\,device=x\\\\,k\\\\=v value=21.5 1700000000123456789\n");
  // Without doubling, `x\` would have turned into `x\,k...` and swallowed the next tag.
  const std::string out = line(Series{"x\\", "m", {{"k", "v"}}});
  const auto p = parseLine(out.substr(0, out.size() - 1));
  REQUIRE(p);
  REQUIRE(p->tags.size() == 2);
  CHECK(p->tags[0].second == "x\\");
  CHECK(p->tags[1] == std::pair<std::string, std::string>{"k", "v"});
}

TEST_CASE("line protocol: empty tag values and keys are omitted") {
  CHECK(line(Series{"", "m", {{"zone", ""}, {"", "x"}, {"k", "v"}}}) ==
        "m,k=v value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: a template tag named device cannot override the device") {
  CHECK(line(Series{"real", "m", {{"device", "fake"}}}) ==
        "m,device=real value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: unicode passes through unchanged") {
  CHECK(line(Series{"Überdruck 泵", "température", {{"ort", "München"}}}) ==
        "température,device=Überdruck\\ 泵,ort=München value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: newlines become (escaped) spaces") {
  CHECK(line(Series{"a\nb\r", "m\nx", {}}) ==
        "m\\ x,device=a\\ b\\  value=21.5 1700000000123456789\n");
}

TEST_CASE("line protocol: unwritable records append nothing") {
  const Series s{"d", "m", {}};
  CHECK(line(s, std::nan("")).empty());
  CHECK(line(s, std::numeric_limits<double>::infinity()).empty());
  CHECK(line(s, -std::numeric_limits<double>::infinity()).empty());
  CHECK(line(Series{"d", "", {}}).empty());
  CHECK(line(Series{"d", "#comment", {}}).empty());  // would be a comment line
}

TEST_CASE("line protocol: arbitrary names round-trip through a strict parser") {
  const std::string alphabet[] = {"a", "Z", " ", ",", "=", "\\", "\"", "ü", "泵", "\t", "'", "#"};
  std::mt19937 rng(42);
  auto randomString = [&](std::size_t max_len) {
    std::string s;
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, max_len)(rng);
    for (std::size_t i = 0; i < n; ++i)
      s += alphabet[std::uniform_int_distribution<std::size_t>(0, std::size(alphabet) - 1)(rng)];
    return s;
  };
  for (int iter = 0; iter < 2000; ++iter) {
    Series s{randomString(8), "m" + randomString(8), {{"t" + randomString(6), randomString(6)}}};
    const std::string out = line(s, 1.25, 42);
    REQUIRE(!out.empty());
    REQUIRE(out.back() == '\n');
    REQUIRE(out.find('\n') == out.size() - 1);
    const auto p = parseLine(out.substr(0, out.size() - 1));
    INFO("line: " << out);
    REQUIRE(p);
    CHECK(p->measurement == s.metric);
    std::vector<std::pair<std::string, std::string>> expected;
    if (!s.device.empty()) expected.emplace_back("device", s.device);
    if (!s.tags[0].second.empty()) expected.push_back(s.tags[0]);
    CHECK(p->tags == expected);
    REQUIRE(p->fields.size() == 1);
    CHECK(p->fields[0].first == "value");
    CHECK(p->fields[0].second == "1.25");
    CHECK(p->timestamp == "42");
  }
}
