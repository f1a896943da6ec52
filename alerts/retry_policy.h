// When to try a failed notification again: capped exponential backoff with jitter, never
// sooner than the server asked for (Retry-After). The outbox owns the loop; this only computes
// delays, from an injected random source, so tests are exact.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "core/time.h"

namespace gw::alerts {

enum class Jitter : std::uint8_t {
  /// AWS "full jitter": uniform in [0, min(max, initial × 2^failures)). Spreads best, may be 0.
  kFull,
  /// AWS "decorrelated jitter": min(max, uniform in [initial, 3 × previous)). Never below
  /// `initial`, grows about ×2 on average.
  kDecorrelated,
};

struct RetryOptions {
  Nanos initial = 1 * kNanosPerSecond;
  Nanos max = 5 * 60 * kNanosPerSecond;  ///< cap of the backoff itself
  Jitter jitter = Jitter::kDecorrelated;
  /// A Retry-After larger than this is cut to it (a bogus "Retry-After: 99999999" must not park
  /// alerts for years). It may exceed `max`: the server's word beats our own cap.
  Nanos max_retry_after = 3600 * kNanosPerSecond;
};

class RetryPolicy {
 public:
  /// Returns a uniformly distributed number in [0, 1).
  using Uniform = std::function<double()>;

  RetryPolicy(RetryOptions options, Uniform uniform);

  /// Records a failure and returns the wait before the next attempt: the jittered backoff,
  /// raised to `retry_after` (capped at max_retry_after) when the server sent one.
  Nanos next(std::optional<Nanos> retry_after = std::nullopt);
  /// After a success: the next failure starts from `initial` again.
  void reset();
  std::uint32_t failures() const { return failures_; }

 private:
  RetryOptions options_;
  Uniform uniform_;
  std::uint32_t failures_ = 0;
  Nanos previous_ = 0;
};

/// A Uniform from a seeded Mersenne Twister (seed it from std::random_device in production, so
/// gateways restarted together do not retry in lock-step).
RetryPolicy::Uniform seededUniform(std::uint64_t seed);

/// Parses an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the
/// obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994".
std::optional<Nanos> parseHttpDate(std::string_view s);

/// Parses a Retry-After value: delay-seconds ("120") or an HTTP-date, which is turned into a
/// delay from `now` (0 when it is in the past). nullopt for anything else.
std::optional<Nanos> parseRetryAfter(std::string_view value, Nanos now);

}  // namespace gw::alerts
