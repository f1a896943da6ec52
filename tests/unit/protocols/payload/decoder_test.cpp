#include "protocols/payload/decoder.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <ostream>
#include <string>
#include <vector>

#include "protocols/payload/message_decoder.h"
#include "tests/support/alloc_counter.h"

namespace gw::payload {
// For doctest's failure messages.
std::ostream& operator<<(std::ostream& os, Format f) { return os << static_cast<int>(f); }
std::ostream& operator<<(std::ostream& os, TimeUnit u) { return os << static_cast<int>(u); }
}  // namespace gw::payload

// Counts allocations, to check that decoding does not allocate in the steady state.

using gw::Nanos;
using namespace gw::payload;

namespace {

DecoderOptions jsonOpts(std::string value = "value", std::string ts = "",
                        TimeUnit unit = TimeUnit::kMillis) {
  DecoderOptions o;
  o.format = Format::kJson;
  o.value_field = std::move(value);
  o.timestamp_field = std::move(ts);
  o.timestamp_unit = unit;
  return o;
}

DecoderOptions fmtOpts(Format f, std::string ts = "") {
  DecoderOptions o;
  o.format = f;
  o.timestamp_field = std::move(ts);
  return o;
}

// Errors compare by name: doctest's unqualified toString() finds ours by ADL, so DecodeError
// itself cannot appear in a CHECK expression.
std::string str(DecodeError e) { return toString(e); }

// Decodes a json-format payload that must succeed and returns its single value.
double jsonValue(Decoder& d, std::string_view payload) {
  Decoded out;
  const DecodeError e = d.decode(payload, out);
  INFO("payload: " << std::string(payload) << " error: " << str(e));
  REQUIRE(str(e) == "none");
  REQUIRE(out.values.size() == 1);
  CHECK(out.values[0].metric.empty());
  return out.values[0].value;
}

std::string decodeErr(Decoder& d, std::string_view payload) {
  Decoded out;
  const DecodeError e = d.decode(payload, out);
  if (e != DecodeError::kNone) CHECK(out.values.empty());
  return str(e);
}

}  // namespace

TEST_CASE("toString, parseFormat, parseTimeUnit") {
  CHECK(std::string(toString(DecodeError::kTooLarge)) == "too_large");
  CHECK(std::string(toString(DecodeError::kNotJson)) == "not_json");
  CHECK(std::string(toString(DecodeError::kNotNumber)) == "not_number");
  CHECK(std::string(toString(DecodeError::kNotFinite)) == "not_finite");
  CHECK(std::string(toString(DecodeError::kNoFields)) == "no_fields");
  CHECK(std::string(toString(DecodeError::kNone)) == "none");

  CHECK(parseFormat("json") == Format::kJson);
  CHECK(parseFormat("value") == Format::kValue);
  CHECK(parseFormat("fields") == Format::kFields);
  CHECK_FALSE(parseFormat("JSON").has_value());
  CHECK_FALSE(parseFormat("").has_value());

  CHECK(parseTimeUnit("s") == TimeUnit::kSeconds);
  CHECK(parseTimeUnit("ms") == TimeUnit::kMillis);
  CHECK(parseTimeUnit("us") == TimeUnit::kMicros);
  CHECK(parseTimeUnit("ns") == TimeUnit::kNanos);
  CHECK(parseTimeUnit("rfc3339") == TimeUnit::kRfc3339);
  CHECK_FALSE(parseTimeUnit("sec").has_value());
  CHECK_FALSE(parseTimeUnit("").has_value());
}

TEST_CASE("json: value as number, numeric string, nested path") {
  Decoder d(jsonOpts());
  CHECK(jsonValue(d, R"({"value":21.5})") == 21.5);
  CHECK(jsonValue(d, R"({"other":"x","value":-3})") == -3.0);
  CHECK(jsonValue(d, R"(  {"value" : 1.5e3 }  )") == 1500.0);
  CHECK(jsonValue(d, R"({"value":-2.5E-2})") == -0.025);
  CHECK(jsonValue(d, R"({"value":0})") == 0.0);
  CHECK(jsonValue(d, R"({"value":"21.5"})") == 21.5);
  CHECK(jsonValue(d, R"({"value":" -7 "})") == -7.0);
  CHECK(jsonValue(d, R"({"value":"1e2"})") == 100.0);
  CHECK(jsonValue(d, "{\"value\":21.5}\n") == 21.5);
  // Fields after the value and other value-shaped fields elsewhere are ignored.
  CHECK(jsonValue(d, R"({"value":4,"x":{"value":5},"y":[{"value":6}]})") == 4.0);
  // Duplicate keys: the last one wins.
  CHECK(jsonValue(d, R"({"value":1,"value":2})") == 2.0);
  // Escaped keys are compared unescaped.
  CHECK(jsonValue(d, R"({"val\u0075e":8})") == 8.0);

  Decoder nested(jsonOpts("data.temp"));
  CHECK(jsonValue(nested, R"({"data":{"temp":19.25,"hum":40}})") == 19.25);
  CHECK(jsonValue(nested, R"({"id":"a","data":{"x":{"temp":1},"temp":"2.5"}})") == 2.5);
  CHECK(decodeErr(nested, R"({"temp":1})") == "not_number");
  CHECK(decodeErr(nested, R"({"data":{"x":{"temp":1}}})") == "not_number");
  CHECK(decodeErr(nested, R"({"data":[{"temp":1}]})") == "not_number");
  CHECK(decodeErr(nested, R"({"data":5})") == "not_number");
  CHECK(decodeErr(nested, R"({"data.temp":5})") == "not_number");

  Decoder deep(jsonOpts("a.b.c.d"));
  CHECK(jsonValue(deep, R"({"a":{"b":{"c":{"d":-1}}}})") == -1.0);
}

TEST_CASE("json: numbers at the edges of a double") {
  Decoder d(jsonOpts());
  // Integers beyond 2^53 round to the nearest double.
  CHECK(jsonValue(d, R"({"value":9007199254740993})") == 9007199254740992.0);
  CHECK(jsonValue(d, R"({"value":18446744073709551616})") == 18446744073709551616.0);
  CHECK(jsonValue(d, R"({"value":123456789012345678901234567890})") ==
        doctest::Approx(1.2345678901234568e29));
  CHECK(jsonValue(d, R"({"value":-9223372036854775809})") == -9223372036854775808.0);
  CHECK(jsonValue(d, R"({"value":1.7976931348623157e308})") == std::numeric_limits<double>::max());
  // Underflow is zero, like any JSON parser.
  CHECK(jsonValue(d, R"({"value":1e-400})") == 0.0);
  CHECK(jsonValue(d, R"({"value":"1e-400"})") == 0.0);
  const double neg_zero = jsonValue(d, R"({"value":-0.0})");
  CHECK(neg_zero == 0.0);
  CHECK(std::signbit(neg_zero));
  // Overflow is not finite, whether a number or a string.
  CHECK(decodeErr(d, R"({"value":1e999})") == "not_finite");
  CHECK(decodeErr(d, R"({"value":-1e309})") == "not_finite");
  CHECK(decodeErr(d, R"({"value":"1e999"})") == "not_finite");
  CHECK(decodeErr(d, R"({"value":"NaN"})") == "not_finite");
  CHECK(decodeErr(d, R"({"value":"-Infinity"})") == "not_finite");
  // An overflowing number elsewhere is valid JSON and does not matter.
  CHECK(jsonValue(d, R"({"junk":1e999,"value":3})") == 3.0);
  CHECK(jsonValue(d, R"({"value":3,"junk":[1e999,-1e999]})") == 3.0);
}

TEST_CASE("json: values that are not numbers") {
  Decoder d(jsonOpts());
  CHECK(decodeErr(d, R"({"value":true})") == "not_number");
  CHECK(decodeErr(d, R"({"value":false})") == "not_number");
  CHECK(decodeErr(d, R"({"value":null})") == "not_number");
  CHECK(decodeErr(d, R"({"value":{"v":1}})") == "not_number");
  CHECK(decodeErr(d, R"({"value":[1]})") == "not_number");
  CHECK(decodeErr(d, R"({"value":"abc"})") == "not_number");
  CHECK(decodeErr(d, R"({"value":"21.5 C"})") == "not_number");
  CHECK(decodeErr(d, R"({"value":""})") == "not_number");
  CHECK(decodeErr(d, R"({"value":"0x10"})") == "not_number");
  CHECK(decodeErr(d, R"({"other":1})") == "not_number");
  CHECK(decodeErr(d, R"({})") == "not_number");
  CHECK(decodeErr(d, R"([1,2])") == "not_number");
  // Valid JSON scalar documents have no field.
  CHECK(decodeErr(d, "21.5") == "not_number");
  CHECK(decodeErr(d, "1e999") == "not_number");
  CHECK(decodeErr(d, R"("21.5")") == "not_number");
  CHECK(decodeErr(d, "true") == "not_number");
  CHECK(decodeErr(d, "null") == "not_number");

  Decoder empty_path(jsonOpts(""));
  CHECK(decodeErr(empty_path, R"({"":1})") == "not_number");
}

TEST_CASE("json: invalid JSON is not_json, wherever the fault is") {
  Decoder d(jsonOpts());
  const char* bad[] = {
      "",
      "   ",
      "\n",
      "hello",
      "21.5 x",
      "1e999 x",
      R"("abc)",
      "tru",
      "nul",
      R"({"value":1} xyz)",
      R"({"value":1}})",
      R"({"value":1} {})",
      R"({"value":1}])",
      R"({"value":1)",
      R"({"value":1,})",
      R"({"value" 1})",
      R"({"value":1 "b":2})",
      R"({,"value":1})",
      R"({"value":})",
      R"({"value":01})",
      R"({"value":1.})",
      R"({"value":-})",
      R"({"value":+1})",
      R"({"value":.5})",
      R"({"value":1x})",
      R"({"value":NaN})",
      R"({"value":Infinity})",
      R"({"value":0x10})",
      R"({"value":'1'})",
      R"({value:1})",
      // The value comes first; the fault is later and must still be found.
      R"({"value":1,"b":tru})",
      R"({"value":1,"b":nul})",
      R"({"value":1,"b":[1,]})",
      R"({"value":1,"b":[1 2]})",
      R"({"value":1,"b":"\x"})",
      R"({"value":1,"b":{"c":}})",
      R"({"value":1,"b":1.e5})",
      R"({"value":1,"b":"unterminated})",
      "{\"value\":1,\"b\":\"\xff\xfe\"}",  // invalid UTF-8
      "[1,2",
      "[,1]",
  };
  for (const char* p : bad) {
    INFO("payload: " << std::string(p));
    CHECK(decodeErr(d, p) == "not_json");
  }
  // Nesting is bounded (64 levels); deeper is refused rather than recursed into.
  std::string deep = R"({"value":1,"d":)";
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  deep += "}";
  CHECK(decodeErr(d, deep) == "not_json");
  std::string ok = R"({"value":1,"d":)";
  for (int i = 0; i < 30; ++i) ok += "[";
  for (int i = 0; i < 30; ++i) ok += "]";
  ok += "}";
  CHECK(jsonValue(d, ok) == 1.0);
  // Unbalanced nesting 60 000 deep: no stack overflow.
  CHECK(decodeErr(d, std::string(60000, '[')) == "not_json");
}

TEST_CASE("too large: refused by size before parsing") {
  DecoderOptions o = jsonOpts();
  o.max_payload = 16;
  Decoder d(o);
  CHECK(jsonValue(d, R"({"value":123456})") == 123456.0);  // exactly 16 bytes
  CHECK(decodeErr(d, R"({"value":1234567})") == "too_large");
  // Size wins over everything else, even garbage.
  CHECK(decodeErr(d, std::string(17, 'x')) == "too_large");

  Decoder def(jsonOpts());  // default 64 KiB
  std::string big(10 * 1024 * 1024, ' ');
  big.replace(0, 11, R"({"value":1})");
  CHECK(decodeErr(def, big) == "too_large");
  std::string big_garbage(10 * 1024 * 1024, '{');
  CHECK(decodeErr(def, big_garbage) == "too_large");

  DecoderOptions vo = fmtOpts(Format::kValue);
  vo.max_payload = 4;
  Decoder v(vo);
  CHECK(decodeErr(v, "12345") == "too_large");

  // A payload at the limit is decoded (whitespace padding is fine).
  DecoderOptions lo = jsonOpts();
  lo.max_payload = 1024 * 1024;
  Decoder large(lo);
  std::string at_limit(1024 * 1024, ' ');
  at_limit.replace(0, 12, R"({"value":42})");
  CHECK(jsonValue(large, at_limit) == 42.0);
}

TEST_CASE("value format") {
  Decoder d(fmtOpts(Format::kValue, "ts"));
  auto value = [&](std::string_view p) {
    Decoded out;
    const DecodeError e = d.decode(p, out);
    INFO("payload: '" << std::string(p) << "' error: " << str(e));
    REQUIRE(str(e) == "none");
    REQUIRE(out.values.size() == 1);
    CHECK(out.values[0].metric.empty());
    CHECK_FALSE(out.device_time.has_value());
    CHECK_FALSE(out.bad_timestamp);
    return out.values[0].value;
  };
  CHECK(value("21.5") == 21.5);
  CHECK(value("  21.5\n") == 21.5);
  CHECK(value("21.5\r\n") == 21.5);
  CHECK(value("\t-4") == -4.0);
  CHECK(value("+4") == 4.0);
  CHECK(value("1e3") == 1000.0);
  CHECK(value("-2.5E-1") == -0.25);
  CHECK(value("9007199254740993") == 9007199254740992.0);
  CHECK(value("0") == 0.0);
  CHECK(value(".5") == 0.5);

  CHECK(decodeErr(d, "NaN") == "not_finite");
  CHECK(decodeErr(d, "nan") == "not_finite");
  CHECK(decodeErr(d, "inf") == "not_finite");
  CHECK(decodeErr(d, "-Infinity") == "not_finite");
  CHECK(decodeErr(d, "1e999") == "not_finite");
  CHECK(decodeErr(d, "-1e999\n") == "not_finite");

  CHECK(decodeErr(d, "") == "not_number");
  CHECK(decodeErr(d, " \n") == "not_number");
  CHECK(decodeErr(d, "abc") == "not_number");
  CHECK(decodeErr(d, "21.5 C") == "not_number");
  CHECK(decodeErr(d, "21,5") == "not_number");
  CHECK(decodeErr(d, "0x1A") == "not_number");
  CHECK(decodeErr(d, "++1") == "not_number");
  CHECK(decodeErr(d, "+-1") == "not_number");
  CHECK(decodeErr(d, "1 2") == "not_number");
  CHECK(decodeErr(d, R"("21.5")") == "not_number");
  CHECK(decodeErr(d, R"({"value":1})") == "not_number");
  CHECK(decodeErr(d, std::string_view("1\0", 2)) == "not_number");
}

TEST_CASE("fields format") {
  Decoder d(fmtOpts(Format::kFields, "ts"));
  Decoded out;
  REQUIRE(str(d.decode(
              R"({"temp":21.5,"hum":40,"ts":1795256130123,"name":"pump 7","on":true,)"
              R"("n":null,"s":"12","o":{"x":1},"a":[1,2],"neg":-1e-3,"big":12345678901234567890})",
              out)) == "none");
  REQUIRE(out.values.size() == 4);
  CHECK(out.values[0].metric == "temp");
  CHECK(out.values[0].value == 21.5);
  CHECK(out.values[1].metric == "hum");
  CHECK(out.values[1].value == 40.0);
  CHECK(out.values[2].metric == "neg");
  CHECK(out.values[2].value == -0.001);
  CHECK(out.values[3].metric == "big");
  CHECK(out.values[3].value == 12345678901234567890.0);
  CHECK(out.device_time == Nanos{1795256130123} * 1'000'000);
  CHECK_FALSE(out.bad_timestamp);

  // Escaped keys are unescaped; duplicates give two values in document order.
  REQUIRE(str(d.decode(R"({"t\"1":1,"\u00e9":2,"t\"1":3})", out)) == "none");
  REQUIRE(out.values.size() == 3);
  CHECK(out.values[0].metric == "t\"1");
  CHECK(out.values[1].metric == "\xc3\xa9");
  CHECK(out.values[2].metric == "t\"1");
  CHECK(out.values[2].value == 3.0);
  CHECK_FALSE(out.device_time.has_value());

  // An overflowing field is skipped; alone it is not_finite.
  REQUIRE(str(d.decode(R"({"a":1e999,"b":2})", out)) == "none");
  REQUIRE(out.values.size() == 1);
  CHECK(out.values[0].metric == "b");
  CHECK(decodeErr(d, R"({"a":1e999})") == "not_finite");

  CHECK(decodeErr(d, R"({})") == "no_fields");
  CHECK(decodeErr(d, R"({"ts":1795256130123})") == "no_fields");
  CHECK(decodeErr(d, R"({"s":"1","b":true,"n":null,"o":{"x":1},"a":[1]})") == "no_fields");
  CHECK(decodeErr(d, R"({"":1})") == "no_fields");
  CHECK(decodeErr(d, "[1,2,1e999]") == "no_fields");
  CHECK(decodeErr(d, "21.5") == "no_fields");
  CHECK(decodeErr(d, R"({"a":1} x)") == "not_json");
  CHECK(decodeErr(d, R"({"a":1,"b":[}")") == "not_json");
  CHECK(decodeErr(d, "") == "not_json");

  // Without a timestamp field, "ts" is a metric like any other.
  Decoder no_ts(fmtOpts(Format::kFields));
  REQUIRE(str(no_ts.decode(R"({"ts":5,"v":1})", out)) == "none");
  REQUIRE(out.values.size() == 2);
  CHECK(out.values[0].metric == "ts");
}

TEST_CASE("timestamps: units") {
  struct Case {
    TimeUnit unit;
    const char* ts;
    Nanos expected;
  };
  const Case cases[] = {
      {TimeUnit::kSeconds, "1795256130", 1795256130LL * 1'000'000'000},
      {TimeUnit::kSeconds, "1795256130.5", 1795256130LL * 1'000'000'000 + 500'000'000},
      {TimeUnit::kSeconds, "1.7952561305e9", 1795256130LL * 1'000'000'000 + 500'000'000},
      {TimeUnit::kSeconds, "\"1795256130\"", 1795256130LL * 1'000'000'000},
      {TimeUnit::kSeconds, "0", 0},
      {TimeUnit::kMillis, "-0", 0},
      {TimeUnit::kNanos, "-0.4", 0},  // rounds to 1970-01-01, not before
      {TimeUnit::kRfc3339, "\"1970-01-01T00:00:00Z\"", 0},
      {TimeUnit::kMillis, "1795256130123", 1795256130123LL * 1'000'000},
      {TimeUnit::kMillis, "1795256130123.5", 1795256130123LL * 1'000'000 + 500'000},
      {TimeUnit::kMillis, "\" 1795256130123 \"", 1795256130123LL * 1'000'000},
      {TimeUnit::kMillis, "1795256130123.4999996", 1795256130123LL * 1'000'000 + 500'000},
      {TimeUnit::kSeconds, "1795256130.123456789", 1795256130123456789LL},
      {TimeUnit::kSeconds, "1795256130.1234567895", 1795256130123456790LL},
      {TimeUnit::kNanos, "1795256130123456789.5", 1795256130123456790LL},
      {TimeUnit::kMicros, "1.5e6", 1'500'000'000},
      {TimeUnit::kMicros, "1795256130123456", 1795256130123456LL * 1'000},
      {TimeUnit::kNanos, "1795256130123456789", 1795256130123456789LL},  // beyond 2^53: exact
      {TimeUnit::kNanos, "\"1795256130123456789\"", 1795256130123456789LL},
      {TimeUnit::kNanos, "9223372036854775807", std::numeric_limits<Nanos>::max()},
      {TimeUnit::kSeconds, "9223372036.854775807", std::numeric_limits<Nanos>::max()},
      {TimeUnit::kRfc3339, "\"2026-11-21T10:15:30.123Z\"", 1795256130123LL * 1'000'000},
      {TimeUnit::kRfc3339, "\"2026-11-21T12:15:30.123+02:00\"", 1795256130123LL * 1'000'000},
      {TimeUnit::kRfc3339, "\"2026-11-21T05:15:30.123456789-05:00\"", 1795256130123456789LL},
  };
  for (const Case& c : cases) {
    INFO("ts: " << std::string(c.ts) << " unit " << static_cast<int>(c.unit));
    Decoder d(jsonOpts("value", "ts", c.unit));
    Decoded out;
    const std::string p = std::string(R"({"value":1,"ts":)") + c.ts + "}";
    REQUIRE(str(d.decode(p, out)) == "none");
    CHECK_FALSE(out.bad_timestamp);
    REQUIRE(out.device_time.has_value());
    CHECK(*out.device_time == c.expected);
    // The same in format fields, where the timestamp is not a metric.
    Decoder f(DecoderOptions{Format::kFields, "value", "ts", c.unit});
    REQUIRE(str(f.decode(p, out)) == "none");
    REQUIRE(out.values.size() == 1);
    CHECK(out.values[0].metric == "value");
    CHECK(out.device_time == c.expected);
  }
  // Before the value, nested, and 2026-11-21T10:15:30.123Z formats back.
  Decoder nested(jsonOpts("data.v", "meta.time", TimeUnit::kRfc3339));
  Decoded out;
  REQUIRE(str(nested.decode(R"({"meta":{"time":"2026-11-21T10:15:30.123Z"},"data":{"v":2}})",
                            out)) == "none");
  REQUIRE(out.device_time.has_value());
  CHECK(gw::formatRfc3339Millis(*out.device_time) == "2026-11-21T10:15:30.123Z");
  CHECK(out.values.at(0).value == 2.0);
}

TEST_CASE("timestamps: missing, null and bad") {
  Decoder ms(jsonOpts("value", "ts", TimeUnit::kMillis));
  Decoded out;
  REQUIRE(str(ms.decode(R"({"value":1})", out)) == "none");
  CHECK_FALSE(out.device_time.has_value());
  CHECK_FALSE(out.bad_timestamp);
  REQUIRE(str(ms.decode(R"({"value":1,"ts":null})", out)) == "none");
  CHECK_FALSE(out.device_time.has_value());
  CHECK_FALSE(out.bad_timestamp);
  REQUIRE(str(ms.decode(R"({"value":1,"x":{"ts":5}})", out)) == "none");
  CHECK_FALSE(out.device_time.has_value());
  CHECK_FALSE(out.bad_timestamp);

  auto bad = [](TimeUnit unit, std::string_view ts) {
    Decoder d(jsonOpts("value", "ts", unit));
    Decoded out;
    const std::string p = std::string(R"({"value":7,"ts":)") + std::string(ts) + "}";
    INFO("payload: " << p);
    REQUIRE(str(d.decode(p, out)) == "none");
    CHECK(out.bad_timestamp);
    CHECK_FALSE(out.device_time.has_value());
    REQUIRE(out.values.size() == 1);  // the reading is kept
    CHECK(out.values[0].value == 7.0);
  };
  bad(TimeUnit::kMillis, "true");
  bad(TimeUnit::kMillis, "{\"t\":1}");
  bad(TimeUnit::kMillis, "[1]");
  bad(TimeUnit::kMillis, "\"yesterday\"");
  bad(TimeUnit::kMillis, "\"\"");
  bad(TimeUnit::kMillis, "\"NaN\"");
  bad(TimeUnit::kMillis, "\"2026-11-21T10:15:30Z\"");
  bad(TimeUnit::kMillis, "1e999");
  bad(TimeUnit::kMillis, "1e300");
  bad(TimeUnit::kMillis, "9223372036854775807");  // overflows int64 ns
  bad(TimeUnit::kSeconds, "9300000000");          // year 2264
  bad(TimeUnit::kSeconds, "-9300000000");
  bad(TimeUnit::kNanos, "9223372036854775808");  // beyond int64
  bad(TimeUnit::kNanos, "18446744073709551616");
  bad(TimeUnit::kMillis, "\"1.2.3\"");
  bad(TimeUnit::kMillis, "\"--5\"");
  bad(TimeUnit::kMillis, "\"1.-5\"");
  bad(TimeUnit::kMillis, "\"0x10\"");
  bad(TimeUnit::kSeconds, "9223372036.854775808");  // just past int64 ns in the fraction
  bad(TimeUnit::kRfc3339, "1795256130123");         // a number is not RFC 3339
  bad(TimeUnit::kRfc3339, "\"2026-11-21 10:15\"");
  bad(TimeUnit::kRfc3339, "\"2026-13-21T10:15:30Z\"");
  bad(TimeUnit::kRfc3339, "\"2026-11-21T10:15:30\"");   // no offset
  bad(TimeUnit::kRfc3339, "\"9999-12-31T23:59:59Z\"");  // beyond int64 ns
  bad(TimeUnit::kRfc3339, "\"0001-01-01T00:00:00Z\"");
  // Before 1970 (issue 17): refused, the values kept.
  bad(TimeUnit::kMillis, "-5");
  bad(TimeUnit::kMillis, "\"-5\"");
  bad(TimeUnit::kSeconds, "-1");
  bad(TimeUnit::kMillis, "\"-1.0000004\"");
  bad(TimeUnit::kMillis, "-1.5");
  bad(TimeUnit::kNanos, "-1");
  bad(TimeUnit::kSeconds, "-9223372036.854775807");
  bad(TimeUnit::kRfc3339, "\"1969-12-31T23:59:59.999Z\"");
  bad(TimeUnit::kRfc3339, "\"1970-01-01T00:59:59+01:00\"");

  // Format fields: a time before 1970 is bad there too, the fields kept.
  Decoder fields(DecoderOptions{Format::kFields, "value", "ts", TimeUnit::kMillis});
  REQUIRE(str(fields.decode(R"({"a":1,"b":2,"ts":-5})", out)) == "none");
  CHECK(out.bad_timestamp);
  CHECK_FALSE(out.device_time.has_value());
  CHECK(out.values.size() == 2);

  // A bad timestamp does not hide a bad value.
  Decoder d(jsonOpts("value", "ts"));
  CHECK(decodeErr(d, R"({"value":"x","ts":true})") == "not_number");
  CHECK(decodeErr(d, R"({"value":1,"ts":tru})") == "not_json");
}

TEST_CASE("one decoder reused across many payloads") {
  Decoder fields(fmtOpts(Format::kFields, "ts"));
  Decoder json(jsonOpts("data.v", "ts", TimeUnit::kMillis));
  Decoded out;
  for (int i = 0; i < 2000; ++i) {
    const std::string name = "metric_" + std::to_string(i) + std::string(i % 97, 'x');
    std::string p = "{\"" + name + "\":" + std::to_string(i) +
                    ",\"ts\":" + std::to_string(1795256130000LL + i) + ",\"k\\\"" +
                    std::to_string(i) + "\":-" + std::to_string(i) + "}";
    if (i % 7 == 0) p += std::string(static_cast<size_t>(i), ' ');  // vary the size
    if (i % 11 == 0) {
      CHECK(str(fields.decode("{\"bad\":" + std::to_string(i), out)) == "not_json");
      CHECK(out.values.empty());
    }
    REQUIRE(str(fields.decode(p, out)) == "none");
    REQUIRE(out.values.size() == 2);
    // The views stay valid until the next decode, even after `p` is gone.
    p.assign(p.size(), '#');
    CHECK(out.values[0].metric == name);
    CHECK(out.values[0].value == static_cast<double>(i));
    CHECK(out.values[1].metric == "k\"" + std::to_string(i));
    CHECK(out.values[1].value == -static_cast<double>(i));
    CHECK(out.device_time == (1795256130000LL + i) * 1'000'000);

    const std::string j =
        "{\"data\":{\"v\":\"" + std::to_string(i) + ".25\"},\"ts\":" + std::to_string(i) + "}";
    REQUIRE(str(json.decode(j, out)) == "none");
    CHECK(out.values.at(0).value == i + 0.25);
    CHECK(out.device_time == Nanos{i} * 1'000'000);
  }
  // Moving a decoder keeps it working.
  Decoder moved = std::move(fields);
  REQUIRE(str(moved.decode(R"({"a":1})", out)) == "none");
  CHECK(out.values.at(0).metric == "a");
  CHECK(moved.options().format == Format::kFields);
  CHECK(moved.options().timestamp_field == "ts");
}

TEST_CASE("the steady state does not allocate") {
  const std::string payloads[] = {
      R"({"value":21.53,"ts":1795256130123})",
      R"({"value":"21.53","ts":"2026-11-21T10:15:30.123+01:00","x":[1,{"y":"z\u00e9"}]})",
      R"({"value":1} trailing)",
      R"({"value":true})",
      std::string(1000, ' ') + R"({"value":2})",
  };
  Decoder json(jsonOpts("value", "ts", TimeUnit::kRfc3339));
  Decoder fields(fmtOpts(Format::kFields, "ts"));
  Decoder value(fmtOpts(Format::kValue));
  Decoded out;
  auto round = [&] {
    for (const std::string& p : payloads) {
      json.decode(p, out);
      fields.decode(p, out);
      value.decode(p, out);
    }
    value.decode("21.5\n", out);
  };
  round();  // sizes the buffers
  const long before = gw::test::allocations();
  for (int i = 0; i < 100; ++i) round();
  CHECK(gw::test::allocations() - before == 0);
}

TEST_CASE("senml: a relative time reaching before 1970 is a bad timestamp, the value kept") {
  // Found by tests/fuzz/senml_fuzz: t = -9e9 s is relative (below 2^28 s), 285 years ago.
  PayloadOptions o;
  o.senml = true;
  MessageDecoder d(o);
  gw::Series series;
  series.device = "dev";
  REQUIRE(d.decode(R"([{"n":"a","v":1,"t":-9e9},{"n":"b","v":2,"t":-60}])", series) == nullptr);
  const Nanos receive = 1795256130LL * 1'000'000'000;
  std::vector<std::pair<std::string, Decoded>> got;
  d.emit(series, receive,
         [&](const gw::Series& s, const Decoded& out) { got.emplace_back(s.metric, out); });
  REQUIRE(got.size() == 2);
  CHECK(got[0].first == "a");
  CHECK(got[0].second.bad_timestamp);
  CHECK_FALSE(got[0].second.device_time.has_value());
  CHECK(got[0].second.values.at(0).value == 1.0);
  CHECK_FALSE(got[1].second.bad_timestamp);
  CHECK(got[1].second.device_time == receive - 60'000'000'000LL);
}

TEST_CASE("names with control characters are refused as bad_name, the same for every sink") {
  // Issue 17: a field named "a\nb" reached Kafka as "a\nb" and the time-series store as "a b".
  gw::Series series;
  series.device = "pump-1";
  series.metric = "temp";
  series.tags = {{"line", "3"}};
  SUBCASE("a field name (format fields), the whole message") {
    PayloadOptions o;
    o.decoder.format = Format::kFields;
    MessageDecoder d(o);
    CHECK(d.decode(R"({"ok":1,"a\nb":2})", series) == std::string("bad_name"));
    CHECK(d.decode(R"({"a\u007fb":2})", series) == std::string("bad_name"));
    CHECK(d.decode(R"({"tab\there":2})", series) == std::string("bad_name"));
    CHECK(d.decode(R"({"ok":1,"a b":2,"ü":3})", series) == nullptr);  // spaces, UTF-8: fine
  }
  SUBCASE("a SenML name or base name: already refused by RFC 8428's name rules") {
    PayloadOptions o;
    o.senml = true;
    MessageDecoder d(o);
    CHECK(d.decode(R"([{"n":"a\nb","v":1}])", series) == std::string("not_senml"));
    CHECK(d.decode(R"([{"bn":"x\r","n":"a","v":1}])", series) == std::string("not_senml"));
    CHECK(d.decode(R"([{"n":"a","v":1}])", series) == nullptr);
  }
  SUBCASE("a device, metric or tag from the topic template") {
    PayloadOptions o;
    o.decoder.format = Format::kValue;
    MessageDecoder d(o);
    CHECK(d.decode("1", series) == nullptr);
    for (auto* name :
         {&series.device, &series.metric, &series.tags[0].first, &series.tags[0].second}) {
      const std::string keep = *name;
      *name += '\n';
      CHECK(d.decode("1", series) == std::string("bad_name"));
      *name = keep;
    }
  }
}
