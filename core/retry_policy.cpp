#include "core/retry_policy.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>

namespace gw {
namespace {

int monthIndex(const char* name) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i)
    if (std::strcmp(name, kMonths[i]) == 0) return i + 1;
  return 0;
}

std::optional<Nanos> civil(int year, const char* month, int day, int h, int m, int s) {
  const int mon = monthIndex(month);
  if (mon == 0 || year < 1970) return std::nullopt;
  return civilToNanos(year, mon, day, h, m, s);
}

}  // namespace

RetryPolicy::RetryPolicy(RetryOptions options, Uniform uniform)
    : options_(options), uniform_(std::move(uniform)) {
  assert(options_.initial > 0 && options_.max >= options_.initial);
  if (!uniform_) uniform_ = seededUniform(std::random_device{}());
}

Nanos RetryPolicy::next(std::optional<Nanos> retry_after) {
  // initial × 2^failures without overflow: stop doubling at the cap.
  Nanos ceiling = options_.initial;
  for (std::uint32_t i = 0; i < failures_ && ceiling < options_.max; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, options_.max);
  if (failures_ < UINT32_MAX) ++failures_;
  const double u = std::clamp(uniform_(), 0.0, 1.0);
  const Nanos half = ceiling / 2;
  Nanos wait = half + static_cast<Nanos>(u * static_cast<double>(ceiling - half));
  wait = std::min(wait, ceiling);
  if (retry_after) wait = std::max(wait, std::clamp<Nanos>(*retry_after, 0, options_.max));
  return wait;
}

RetryPolicy::Uniform seededUniform(std::uint64_t seed) {
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}

std::optional<Nanos> parseHttpDate(std::string_view sv) {
  if (sv.size() < 20 || sv.size() > 40) return std::nullopt;
  const std::string s(sv);
  char wday[16] = {}, month[4] = {};
  int day = 0, year = 0, h = 0, m = 0, sec = 0, n = 0;
  // IMF-fixdate
  if (std::sscanf(s.c_str(), "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &day, month,
                  &year, &h, &m, &sec, &n) == 7 &&
      static_cast<std::size_t>(n) == s.size())
    return civil(year, month, day, h, m, sec);
  // RFC 850: two-digit year; RFC 9110 says a year that looks > 50 years ahead is in the past.
  n = 0;
  if (std::sscanf(s.c_str(), "%15[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wday, &day, month,
                  &year, &h, &m, &sec, &n) == 7 &&
      static_cast<std::size_t>(n) == s.size())
    return civil(year < 70 ? 2000 + year : 1900 + year, month, day, h, m, sec);
  // asctime
  n = 0;
  if (std::sscanf(s.c_str(), "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wday, month, &day, &h,
                  &m, &sec, &year, &n) == 7 &&
      static_cast<std::size_t>(n) == s.size())
    return civil(year, month, day, h, m, sec);
  return std::nullopt;
}

std::optional<Nanos> parseRetryAfter(std::string_view v, Nanos now) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() &&
         (v.back() == ' ' || v.back() == '\t' || v.back() == '\r' || v.back() == '\n'))
    v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (v.size() > 9) return 999'999'999 * kNanosPerSecond;  // absurd; the policy caps it
    std::int64_t secs = 0;
    for (const char c : v) secs = secs * 10 + (c - '0');
    return secs * kNanosPerSecond;
  }
  const auto date = parseHttpDate(v);
  if (!date) return std::nullopt;
  return std::max<Nanos>(0, *date - now);
}

}  // namespace gw
