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
