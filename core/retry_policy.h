// When to try a failed operation again: the one retry policy of the gateway (design:
// "Components" — forwarder for every sink and notifier, MQTT reconnects, CoAP registrations).
// It only computes delays, from an injected random source, so tests are exact; the caller owns
// the timer.
//
// Backoff: exponential with "equal jitter" (AWS architecture blog, "Exponential Backoff And
// Jitter"). After the n-th consecutive failure (n = 0, 1, …) the ceiling is
//   c = min(max, initial × 2^n)
// and the wait is uniform in [c/2, c]. Half of the wait is fixed, so a retry never comes at once
// (full jitter can draw 0 and hammer a struggling server); the other half spreads gateways that
// failed together, so they do not retry in lock-step.
//
// Retry-After: the server's wish is honoured, but never beyond `max`:
//   wait = max(jittered backoff, min(retry_after, max))
// A bogus "Retry-After: 99999999999" must not park a delivery for years: the operator's
// configured maximum is the longest the gateway ever waits.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "core/time.h"

namespace gw {

struct RetryOptions {
  Nanos initial = 1 * kNanosPerSecond;   ///< ceiling after the first failure
  Nanos max = 5 * 60 * kNanosPerSecond;  ///< longest wait, Retry-After included
};

class RetryPolicy {
 public:
  /// Returns a uniformly distributed number in [0, 1).
  using Uniform = std::function<double()>;

  /// `uniform` empty: a Mersenne Twister seeded from std::random_device, so gateways restarted
  /// together do not retry in lock-step. Requires 0 < initial <= max.
  explicit RetryPolicy(RetryOptions options, Uniform uniform = {});

  /// Records a failure and returns the wait before the next attempt (see the file comment).
  Nanos next(std::optional<Nanos> retry_after = std::nullopt);
  /// After a success: the next failure starts from `initial` again.
  void reset() { failures_ = 0; }
  /// Consecutive failures since construction or reset().
  std::uint32_t failures() const { return failures_; }
  const RetryOptions& options() const { return options_; }

 private:
  RetryOptions options_;
  Uniform uniform_;
  std::uint32_t failures_ = 0;
};

/// A Uniform from a Mersenne Twister seeded with `seed` (tests; reproducible).
RetryPolicy::Uniform seededUniform(std::uint64_t seed);

/// Parses an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the
/// obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994".
std::optional<Nanos> parseHttpDate(std::string_view s);

/// Parses a Retry-After value: delay-seconds ("120") or an HTTP-date, which is turned into a
/// delay from `now` (0 when it is in the past). nullopt for anything else. An absurd number of
/// seconds saturates at 999,999,999 s (the policy caps it).
std::optional<Nanos> parseRetryAfter(std::string_view value, Nanos now);

}  // namespace gw
