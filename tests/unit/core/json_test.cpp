#include "core/json.h"

#include <doctest/doctest.h>

#include <cmath>

TEST_CASE("JSON strings are escaped") {
  std::string out;
  gw::json::appendString(out, "pump \"7\",a=b\\\n\x01");
  CHECK(out == R"("pump \"7\",a=b\\\n\u0001")");
}

TEST_CASE("JSON numbers round-trip and non-finite become null") {
  std::string out;
  gw::json::appendNumber(out, 21.5);
  out += ',';
  gw::json::appendNumber(out, std::nan(""));
  out += ',';
  gw::json::appendNumber(out, 0.1);
  CHECK(out == "21.5,null,0.1");
}

TEST_CASE("JSON numbers beyond 64-bit integers keep an exponent") {
  // Found by tests/fuzz/writers_fuzz: 7.477e20 came out as 747707876334372913152, which
  // simdjson refuses as a big integer.
  auto text = [](double v) {
    std::string out;
    gw::json::appendNumber(out, v);
    return out;
  };
  CHECK(text(747707876334372913152.0) == "7.477078763343729e+20");
  CHECK(text(-1e300) == "-1e+300");
  CHECK(text(9223372036854775808.0) == "9.223372036854776e+18");  // 2^63
  CHECK(text(9007199254740993.0) == "9007199254740992");          // below 2^63: as before
  CHECK(text(1e18) == "1e+18");
  CHECK(text(123456789012345678.0) == "123456789012345680");
  CHECK(text(1.5e-300) == "1.5e-300");
}
