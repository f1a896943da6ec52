// Backoff with equal jitter from an injected random source, Retry-After as a floor capped at
// the maximum, and Retry-After parsing (delay-seconds and all three HTTP-date forms).
#include "core/retry_policy.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <vector>

using namespace gw;

namespace {

constexpr Nanos kS = kNanosPerSecond;

// Returns the scripted values in turn, then repeats the last one.
RetryPolicy::Uniform script(std::vector<double> values) {
  auto i = std::make_shared<std::size_t>(0);
  return [values, i] {
    const double v = values[std::min(*i, values.size() - 1)];
    ++*i;
    return v;
  };
}

}  // namespace

TEST_CASE("equal jitter: uniform in [c/2, c] below a doubling ceiling c, capped at max") {
  RetryOptions o{.initial = 1 * kS, .max = 60 * kS};
  SUBCASE("top of the range: 1 2 4 8 16 32 60 60") {
    RetryPolicy p(o, script({1.0}));
    std::vector<Nanos> got;
    for (int i = 0; i < 8; ++i) got.push_back(p.next());
    CHECK(got ==
          std::vector<Nanos>{1 * kS, 2 * kS, 4 * kS, 8 * kS, 16 * kS, 32 * kS, 60 * kS, 60 * kS});
    CHECK(p.failures() == 8);
  }
  SUBCASE("bottom of the range is half the ceiling, never zero") {
    RetryPolicy p(o, script({0.0}));
    std::vector<Nanos> got;
    for (int i = 0; i < 8; ++i) got.push_back(p.next());
    CHECK(got ==
          std::vector<Nanos>{kS / 2, 1 * kS, 2 * kS, 4 * kS, 8 * kS, 16 * kS, 30 * kS, 30 * kS});
  }
  SUBCASE("middle of the range") {
    RetryPolicy p(o, script({0.5}));
    CHECK(p.next() == 3 * kS / 4);
    CHECK(p.next() == 3 * kS / 2);
    CHECK(p.next() == 3 * kS);
  }
  SUBCASE("random draws stay within [c/2, c]") {
    RetryPolicy p(o, seededUniform(42));
    Nanos ceiling = 1 * kS;
    for (int i = 0; i < 200; ++i) {
      const Nanos d = p.next();
      CHECK(d >= ceiling / 2);
      CHECK(d <= ceiling);
      ceiling = std::min<Nanos>(60 * kS, ceiling * 2);
    }
  }
  SUBCASE("many failures do not overflow") {
    RetryPolicy p(o, script({1.0}));
    for (int i = 0; i < 1000; ++i) CHECK(p.next() <= 60 * kS);
  }
  SUBCASE("reset starts over") {
    RetryPolicy p(o, script({1.0}));
    p.next();
    p.next();
    p.reset();
    CHECK(p.failures() == 0);
    CHECK(p.next() == 1 * kS);
  }
  SUBCASE("the default random source stays within bounds") {
    RetryPolicy p(o);
    const Nanos d = p.next();
    CHECK(d >= kS / 2);
    CHECK(d <= kS);
  }
}

TEST_CASE("Retry-After is a minimum, capped by max") {
  RetryOptions o{.initial = 1 * kS, .max = 60 * kS};
  RetryPolicy p(o, script({0.0}));
  CHECK(p.next(7 * kS) == 7 * kS);
  CHECK(p.next(0) == 1 * kS);                // our own backoff when the server's is shorter
  CHECK(p.next(59 * kS) == 59 * kS);         // the server's wish, within our maximum
  CHECK(p.next(600 * kS) == 60 * kS);        // but never beyond the configured maximum
  CHECK(p.next(999999999 * kS) == 60 * kS);  // "Retry-After: 99999999999" does not park for years
  CHECK(p.next(-5 * kS) == 16 * kS);         // our own backoff: 6th failure, ceiling 32 s, bottom
}

TEST_CASE("seededUniform is reproducible and in [0, 1)") {
  auto a = seededUniform(7), b = seededUniform(7);
  for (int i = 0; i < 100; ++i) {
    const double x = a();
    CHECK(x == b());
    CHECK(x >= 0.0);
    CHECK(x < 1.0);
  }
}

TEST_CASE("parseHttpDate: IMF-fixdate, RFC 850, asctime") {
  const Nanos expected = 784'111'777 * kS;  // 1994-11-06T08:49:37Z
  CHECK(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT") == expected);
  CHECK(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT") == expected);
  CHECK(parseHttpDate("Sun Nov  6 08:49:37 1994") == expected);
  CHECK(parseHttpDate("Wed, 21 Oct 2026 07:28:00 GMT") == 1'792'567'680 * kS);
  CHECK_FALSE(parseHttpDate("Sun, 06 Nov 1994 08:49:37 UTC"));
  CHECK_FALSE(parseHttpDate("Sun, 06 Foo 1994 08:49:37 GMT"));
  CHECK_FALSE(parseHttpDate("Sun, 32 Nov 1994 08:49:37 GMT"));
  CHECK_FALSE(parseHttpDate("Sun, 06 Nov 1994 25:49:37 GMT"));
  CHECK_FALSE(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT trailing"));
  CHECK_FALSE(parseHttpDate("2026-10-21T07:28:00Z"));
}

TEST_CASE("parseRetryAfter: seconds or a date relative to now") {
  const Nanos now = 1'792'567'650 * kS;  // 30 s before Wed, 21 Oct 2026 07:28:00 GMT
  CHECK(parseRetryAfter("7", now) == 7 * kS);
  CHECK(parseRetryAfter(" 120 \r\n", now) == 120 * kS);
  CHECK(parseRetryAfter("0", now) == 0);
  CHECK(parseRetryAfter("Wed, 21 Oct 2026 07:28:00 GMT", now) == 30 * kS);
  CHECK(parseRetryAfter("Wed, 21 Oct 2026 07:28:00 GMT", now + 100 * kS) == 0);  // past
  CHECK(parseRetryAfter("99999999999999999999", now) >= 999'999'999 * kS);       // no overflow
  CHECK_FALSE(parseRetryAfter("", now));
  CHECK_FALSE(parseRetryAfter("-5", now));
  CHECK_FALSE(parseRetryAfter("7.5", now));
  CHECK_FALSE(parseRetryAfter("soon", now));
}
