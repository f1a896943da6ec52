#include "core/time.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <limits>

namespace gw {
namespace {

// Howard Hinnant's civil-from-days / days-from-civil (public domain algorithms).
constexpr std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Civil {
  std::int64_t y;
  unsigned m, d;
};

constexpr Civil civilFromDays(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

void appendDigits(std::string& out, std::int64_t v, int width) {
  char buf[24];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  out.append(buf, static_cast<size_t>(width));
}

bool readInt(std::string_view s, size_t pos, size_t len, int& v) {
  if (pos + len > s.size()) return false;
  v = 0;
  for (size_t i = pos; i < pos + len; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

Nanos wallNow() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<Nanos>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

Nanos monoNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Nanos>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

void appendRfc3339Millis(std::string& out, Nanos t) {
  std::int64_t secs = t / kNanosPerSecond;
  std::int64_t rem = t % kNanosPerSecond;
  if (rem < 0) {
    rem += kNanosPerSecond;
    --secs;
  }
  std::int64_t days = secs / 86400;
  std::int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    --days;
  }
  const Civil c = civilFromDays(days);
  appendDigits(out, c.y, 4);
  out.push_back('-');
  appendDigits(out, c.m, 2);
  out.push_back('-');
  appendDigits(out, c.d, 2);
  out.push_back('T');
  appendDigits(out, sod / 3600, 2);
  out.push_back(':');
  appendDigits(out, sod / 60 % 60, 2);
  out.push_back(':');
  appendDigits(out, sod % 60, 2);
  out.push_back('.');
  appendDigits(out, rem / kNanosPerMilli, 3);
  out.push_back('Z');
}

std::string formatRfc3339Millis(Nanos t) {
  std::string s;
  s.reserve(24);
  appendRfc3339Millis(s, t);
  return s;
}

std::optional<Nanos> parseRfc3339(std::string_view s) {
  int y, mo, d, h, mi, se;
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
    return std::nullopt;
  if (!readInt(s, 0, 4, y) || !readInt(s, 5, 2, mo) || !readInt(s, 8, 2, d) ||
      !readInt(s, 11, 2, h) || !readInt(s, 14, 2, mi) || !readInt(s, 17, 2, se))
    return std::nullopt;
  const auto base = civilToNanos(y, mo, d, h, mi, se);  // range-checked
  if (!base) return std::nullopt;
  size_t pos = 19;
  Nanos frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    Nanos scale = kNanosPerSecond / 10;
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++digits;
    }
    if (digits == 0) return std::nullopt;
  }
  if (pos >= s.size()) return std::nullopt;
  std::int64_t offset_s = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (pos + 6 != s.size() || s[pos + 3] != ':' || !readInt(s, pos + 1, 2, oh) ||
        !readInt(s, pos + 4, 2, om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_s = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  return *base - offset_s * kNanosPerSecond + frac;
}

std::optional<Nanos> civilToNanos(int year, int month, int day, int hour, int minute, int second) {
  if (year < 1678 || year > 2261 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 ||
      hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60)
    return std::nullopt;
  const std::int64_t days =
      daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return ((days * 24 + hour) * 60 + minute) * 60 * kNanosPerSecond + second * kNanosPerSecond;
}

std::optional<Nanos> parseDuration(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data() || !std::isfinite(v) || v < 0) return std::nullopt;
  std::string_view unit(p, static_cast<size_t>(s.data() + s.size() - p));
  double mult;
  if (unit == "ns")
    mult = 1;
  else if (unit == "us")
    mult = 1e3;
  else if (unit == "ms")
    mult = 1e6;
  else if (unit == "s")
    mult = 1e9;
  else if (unit == "m" || unit == "min")
    mult = 60e9;
  else if (unit == "h")
    mult = 3600e9;
  else if (unit == "d")
    mult = 86400e9;
  else
    return std::nullopt;
  const double ns = v * mult;
  if (ns > 9.2e18) return std::nullopt;
  return static_cast<Nanos>(std::llround(ns));
}

std::optional<std::uint64_t> parseSize(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data() || !std::isfinite(v) || v < 0) return std::nullopt;
  std::string_view unit(p, static_cast<size_t>(s.data() + s.size() - p));
  double mult;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "KiB")
    mult = 1024.0;
  else if (unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "kB" || unit == "KB")
    mult = 1e3;
  else if (unit == "MB")
    mult = 1e6;
  else if (unit == "GB")
    mult = 1e9;
  else
    return std::nullopt;
  const double bytes = v * mult;
  if (bytes > 1.8e19) return std::nullopt;
  return static_cast<std::uint64_t>(std::llround(bytes));
}

std::optional<Nanos> parseBrokerStamp(std::string_view value, Nanos now) {
  constexpr Nanos kYear2000 = 946'684'800 * kNanosPerSecond;
  constexpr Nanos kMaxAhead = 24 * 3600 * kNanosPerSecond;
  if (value.empty()) return std::nullopt;
  std::optional<Nanos> t;
  const bool numeric = std::all_of(value.begin(), value.end(),
                                   [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  if (numeric) {
    // Epoch milliseconds, integer or fractional; parsed exactly (no double rounding).
    const size_t dot = value.find('.');
    const std::string_view whole = value.substr(0, dot);
    const std::string_view frac = dot == value.npos ? std::string_view() : value.substr(dot + 1);
    if (whole.empty() || whole.size() > 13) return std::nullopt;  // 13 digits: up to 2286
    if (dot != value.npos && (frac.empty() || frac.find('.') != frac.npos)) return std::nullopt;
    Nanos ms = 0;
    for (char c : whole) ms = ms * 10 + (c - '0');
    Nanos sub = 0, scale = kNanosPerMilli / 10;
    for (char c : frac) {
      sub += (c - '0') * scale;
      scale /= 10;
    }
    if (ms > std::numeric_limits<Nanos>::max() / kNanosPerMilli - 1) return std::nullopt;
    t = ms * kNanosPerMilli + sub;
  } else {
    t = parseRfc3339(value);
  }
  if (!t || *t < kYear2000) return std::nullopt;
  if (now >= kYear2000 && *t - now > kMaxAhead) return std::nullopt;  // both positive
  return t;
}

}  // namespace gw
