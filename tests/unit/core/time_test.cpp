#include "core/time.h"

#include <doctest/doctest.h>

using namespace gw;

TEST_CASE("RFC 3339 with milliseconds round-trips") {
  const Nanos t = 1795256130123000000;  // 2026-11-21T10:15:30.123Z
  CHECK(formatRfc3339Millis(t) == "2026-11-21T10:15:30.123Z");
  CHECK(parseRfc3339("2026-11-21T10:15:30.123Z") == t);
  CHECK(parseRfc3339("2026-11-21T11:15:30.123+01:00") == t);
  CHECK(parseRfc3339("2026-11-21T10:15:30.123456789Z") == t + 456789);
  CHECK(formatRfc3339Millis(0) == "1970-01-01T00:00:00.000Z");
  CHECK(formatRfc3339Millis(-1) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("RFC 3339 rejects garbage") {
  CHECK_FALSE(parseRfc3339(""));
  CHECK_FALSE(parseRfc3339("2026-11-21"));
  CHECK_FALSE(parseRfc3339("2026-11-21T10:15:30"));  // no zone
  CHECK_FALSE(parseRfc3339("2026-13-21T10:15:30Z"));
  CHECK_FALSE(parseRfc3339("2026-11-21T10:15:30.Z"));
  CHECK_FALSE(parseRfc3339("2026-11-21T10:15:30Zjunk"));
  CHECK_FALSE(parseRfc3339("9999-12-31T23:59:59Z"));  // beyond int64 nanoseconds
  CHECK_FALSE(parseRfc3339("0001-01-01T00:00:00Z"));
}

TEST_CASE("durations and sizes need units") {
  CHECK(parseDuration("50ms") == 50 * kNanosPerMilli);
  CHECK(parseDuration("10s") == 10 * kNanosPerSecond);
  CHECK(parseDuration("1.5h") == 5400 * kNanosPerSecond);
  CHECK(parseDuration("7d") == 7 * 86400 * kNanosPerSecond);
  CHECK(parseDuration("1m") == 60 * kNanosPerSecond);
  CHECK_FALSE(parseDuration("10"));
  CHECK_FALSE(parseDuration("-1s"));
  CHECK_FALSE(parseDuration("10 parsecs"));
  CHECK(parseSize("512MiB") == 512ull << 20);
  CHECK(parseSize("4096") == 4096u);
  CHECK(parseSize("1GB") == 1000000000u);
  CHECK_FALSE(parseSize("12 apples"));
}
