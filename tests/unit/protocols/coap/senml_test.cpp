// SenML JSON (RFC 8428) decoding: base fields, resolved names and times, refusals.
#include "protocols/payload/senml.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using gw::payload::SenmlDecoder;
using gw::payload::SenmlError;
using gw::payload::SenmlRecord;
using Time = SenmlRecord::Time;

namespace {

std::vector<SenmlRecord> decodeOk(SenmlDecoder& d, std::string_view pack) {
  std::vector<SenmlRecord> out;
  REQUIRE(std::string(gw::payload::toString(d.decode(pack, out))) == "ok");
  return out;
}

// The error's counter name ("ok" when the pack decodes).
std::string errorOf(std::string_view pack, size_t max = 64 * 1024) {
  SenmlDecoder d(max);
  std::vector<SenmlRecord> out;
  const auto err = d.decode(pack, out);
  if (err != SenmlError::kNone) CHECK(out.empty());
  return gw::payload::toString(err);
}

std::string name(SenmlError e) { return gw::payload::toString(e); }

}  // namespace

TEST_CASE("RFC 8428 5.1.2: multiple records with a base name and base time") {
  SenmlDecoder d;
  const auto r = decodeOk(d, R"([
    {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320067464e+09,"bu":"%RH","v":20},
    {"u":"lon","v":24.30621},
    {"u":"lat","v":60.07965},
    {"t":60,"v":20.3},
    {"u":"lon","t":60,"v":24.30622},
    {"u":"lat","t":60,"v":60.07965},
    {"t":120,"v":20.7}])");
  REQUIRE(r.size() == 7);
  CHECK(r[0].base_name == "urn:dev:ow:10e2073a01080063:");
  CHECK(r[0].name.empty());
  CHECK(r[0].value == 20);
  CHECK(r[0].time_kind == Time::kAbsolute);
  CHECK(r[0].time == 1320067464LL * 1'000'000'000);
  CHECK(r[3].time == 1320067524LL * 1'000'000'000);
  CHECK(r[6].value == doctest::Approx(20.7));
  CHECK(r[6].time == 1320067584LL * 1'000'000'000);
}

TEST_CASE("names resolve as base name + name; base value is added; booleans are 1/0") {
  SenmlDecoder d;
  const auto r = decodeOk(
      d, R"([{"bn":"dev7/","n":"temp","v":21.5},{"n":"door","vb":true},{"bv":100,"n":"p","v":-1.5},
            {"n":"open","vb":false}])");
  REQUIRE(r.size() == 4);
  CHECK(std::string(r[0].base_name) + std::string(r[0].name) == "dev7/temp");
  CHECK(r[1].value == 1);
  CHECK(r[2].value == doctest::Approx(98.5));
  CHECK(r[3].value == 0);
  CHECK(r[3].time_kind == Time::kNone);
}

TEST_CASE("times: below 2^28 s relative to now, 0 is now, fractions kept to the ns") {
  SenmlDecoder d;
  const auto r = decodeOk(d, R"([{"n":"a","v":1,"t":-5},{"n":"b","v":2,"t":0},
                                 {"n":"c","v":3,"t":1700000000.123456789}])");
  REQUIRE(r.size() == 3);
  CHECK(r[0].time_kind == Time::kRelative);
  CHECK(r[0].time == -5'000'000'000LL);
  CHECK(r[1].time_kind == Time::kNone);
  CHECK(r[2].time_kind == Time::kAbsolute);
  // A double holds ~16 digits: the ns part is exact to well under a microsecond.
  CHECK(std::llabs(r[2].time - 1700000000123456789LL) < 1000);
}

TEST_CASE("records without a numeric value (string, data, sum) carry no reading") {
  SenmlDecoder d;
  const auto r =
      decodeOk(d, R"([{"n":"label","vs":"pump 7"},{"n":"blob","vd":"aGk"},{"n":"energy","s":12},
                      {"n":"t","v":4}])");
  REQUIRE(r.size() == 1);
  CHECK(r[0].name == "t");
  CHECK(errorOf(R"([{"n":"label","vs":"x"}])") == "no_fields");
  CHECK(errorOf("[]") == "no_fields");
}

TEST_CASE("refusals: not JSON, not a pack, wrong types, bad names, must-understand fields") {
  CHECK(errorOf("21.5") == "not_senml");
  CHECK(errorOf(R"({"n":"a","v":1})") == "not_senml");
  CHECK(errorOf(R"([{"n":"a","v":1}] trailing)") == "not_json");
  CHECK(errorOf(R"([{"n":"a","v":1},)") == "not_json");
  CHECK(errorOf(R"([{"n":"a","v":"21.5"}])") == "not_senml");
  CHECK(errorOf(R"([{"n":1,"v":2}])") == "not_senml");
  CHECK(errorOf(R"([{"n":"a","vb":1}])") == "not_senml");
  CHECK(errorOf(R"([{"n":"a","v":1},5])") == "not_senml");
  CHECK(errorOf(R"([{"n":"-a","v":1}])") == "not_senml");   // must start alnum
  CHECK(errorOf(R"([{"n":"a b","v":1}])") == "not_senml");  // no spaces
  CHECK(errorOf(R"([{"n":"a","v":1,"foo_":2}])") == "not_senml");
  CHECK(errorOf(R"([{"n":"a","v":1,"bver":11}])") == "not_senml");
  CHECK(errorOf(R"([{"n":"a","v":1e999}])") == "not_finite");
  // Unknown fields without the '_' suffix are ignored (RFC 8428 4.4).
  CHECK(errorOf(R"([{"n":"a","v":1,"foo":2}])") == "ok");
}

TEST_CASE("a pack is taken whole or refused whole; the size cap applies first") {
  SenmlDecoder d(64);
  std::vector<SenmlRecord> out;
  CHECK(name(d.decode(R"([{"n":"a","v":1},{"n":"b","v":2},{"n":"c","v":3},{"n":"d","v":4}])",
                      out)) == "too_large");
  CHECK(name(d.decode(R"([{"n":"a","v":1},{"n":"b b","v":2}])", out)) == "not_senml");
  CHECK(out.empty());
  CHECK(name(d.decode(R"([{"n":"a","v":1}])", out)) == "ok");
  CHECK(out.size() == 1);
}

TEST_CASE("error names") {
  CHECK(name(SenmlError::kNotSenml) == "not_senml");
  CHECK(name(SenmlError::kNotJson) == "not_json");
  CHECK(name(SenmlError::kNoFields) == "no_fields");
}
