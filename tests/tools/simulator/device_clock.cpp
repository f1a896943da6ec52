#include "tests/tools/simulator/device_clock.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace gw::sim {

namespace {

// Keeps run_start ± span far from int64 overflow.
constexpr Nanos kMaxSpan = Nanos{100} * 36525 * 864 * kNanosPerSecond;  // 100 years

constexpr std::string_view kUnits = "(a number with a unit: ms, s, m, h)";

std::optional<Nanos> parseUnsigned(std::string_view s, std::string_view what, std::string& error) {
  if (auto d = parseDuration(s)) {
    if (*d <= kMaxSpan) return d;
    error = fmt::format("{}: '{}' is more than 100 years", what, s);
    return std::nullopt;
  }
  error = fmt::format("{}: bad duration '{}' {}", what, s, kUnits);
  return std::nullopt;
}

// parseDuration() rejects negative numbers: the sign is ours to handle.
std::optional<Nanos> parseSigned(std::string_view s, std::string_view what, std::string& error) {
  bool neg = false;
  std::string_view body = s;
  if (!body.empty() && (body.front() == '+' || body.front() == '-')) {
    neg = body.front() == '-';
    body.remove_prefix(1);
  }
  auto d = parseDuration(body);
  if (!d) {
    error = fmt::format("{}: bad duration '{}' {}, optionally signed: +37s, -5m", what, s, kUnits);
    return std::nullopt;
  }
  if (*d > kMaxSpan) {
    error = fmt::format("{}: '{}' is more than 100 years", what, s);
    return std::nullopt;
  }
  return neg ? -*d : *d;
}

std::optional<double> parsePpm(std::string_view s, std::string& error) {
  std::string_view body = s;
  if (body.size() < 3 || body.substr(body.size() - 3) != "ppm") {
    error = fmt::format("drift: '{}' must end in ppm, e.g. drift:200ppm or drift:-50ppm", s);
    return std::nullopt;
  }
  body.remove_suffix(3);
  if (!body.empty() && body.front() == '+') body.remove_prefix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
  if (body.empty() || ec != std::errc() || p != body.data() + body.size() || !std::isfinite(v)) {
    error = fmt::format("drift: bad number in '{}', e.g. drift:200ppm or drift:-50ppm", s);
    return std::nullopt;
  }
  // At -1e6 ppm the clock stands still; beyond, it runs backwards.
  if (v <= -1e6 || v > 1e6) {
    error = fmt::format("drift: '{}' out of range (-1000000, 1000000] ppm", s);
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<ClockSpec> parseClockSpec(std::string_view s, std::string& error) {
  ClockSpec spec;
  bool have_offset = false, have_drift = false, none = false;
  if (s.empty()) {
    error = "empty clock spec (want e.g. offset:+37s, drift:200ppm, reset:30s, step:+10s@20s)";
    return std::nullopt;
  }
  for (std::size_t start = 0; start <= s.size();) {
    auto end = s.find(',', start);
    if (end == std::string_view::npos) end = s.size();
    const std::string_view item = s.substr(start, end - start);
    start = end + 1;
    const auto colon = item.find(':');
    const std::string_view kind = item.substr(0, colon);
    const std::string_view arg =
        colon == std::string_view::npos ? std::string_view() : item.substr(colon + 1);
    if (kind == "none" && colon == std::string_view::npos) {
      none = true;
    } else if (colon == std::string_view::npos || arg.empty()) {
      error = fmt::format(
          "'{}' is not KIND:ARG (offset:+37s, drift:200ppm, reset:30s, "
          "step:+10s@20s or none)",
          item);
      return std::nullopt;
    } else if (kind == "offset") {
      if (have_offset) {
        error = "offset given twice";
        return std::nullopt;
      }
      auto d = parseSigned(arg, "offset", error);
      if (!d) return std::nullopt;
      spec.offset = *d;
      have_offset = true;
    } else if (kind == "drift") {
      if (have_drift) {
        error = "drift given twice";
        return std::nullopt;
      }
      auto v = parsePpm(arg, error);
      if (!v) return std::nullopt;
      spec.ppm = *v;
      have_drift = true;
    } else if (kind == "reset") {
      auto at = parseUnsigned(arg, "reset", error);
      if (!at) return std::nullopt;
      spec.events.push_back({ClockEvent::Kind::kReset, *at, 0});
    } else if (kind == "step") {
      const auto atpos = arg.find('@');
      if (atpos == std::string_view::npos) {
        error = fmt::format("step: '{}' is not JUMP@AFTER, e.g. step:+10s@20s", arg);
        return std::nullopt;
      }
      auto delta = parseSigned(arg.substr(0, atpos), "step", error);
      if (!delta) return std::nullopt;
      auto at = parseUnsigned(arg.substr(atpos + 1), "step", error);
      if (!at) return std::nullopt;
      spec.events.push_back({ClockEvent::Kind::kStep, *at, *delta});
    } else {
      error = fmt::format("unknown clock kind '{}' (offset, drift, reset, step or none)", kind);
      return std::nullopt;
    }
  }
  if (none && !spec.exact()) {
    error = "'none' cannot be combined with other clock errors";
    return std::nullopt;
  }
  std::stable_sort(spec.events.begin(), spec.events.end(),
                   [](const ClockEvent& a, const ClockEvent& b) { return a.after < b.after; });
  return spec;
}

std::optional<ClockAssignment> parseClockAssignment(std::string_view s, std::string& error) {
  const auto eq = s.rfind('=');
  if (eq == std::string_view::npos || eq == 0) {
    error = "want DEVICE=SPEC, e.g. pump-001=offset:+37s or '*=drift:20ppm'";
    return std::nullopt;
  }
  auto spec = parseClockSpec(s.substr(eq + 1), error);
  if (!spec) return std::nullopt;
  return ClockAssignment{std::string(s.substr(0, eq)), std::move(*spec)};
}

Nanos deviceTime(const ClockSpec& spec, Nanos run_start, Nanos t) {
  Nanos base = run_start + spec.offset;
  Nanos anchor = run_start;
  for (const auto& e : spec.events) {
    const Nanos at = run_start + e.after;
    if (t < at) break;
    if (e.kind == ClockEvent::Kind::kReset) {
      base = 0;
      anchor = at;
    } else {
      base += e.delta;
    }
  }
  const Nanos elapsed = t - anchor;
  return base + elapsed +
         static_cast<Nanos>(std::llround(static_cast<double>(elapsed) * spec.ppm * 1e-6));
}

std::optional<DelayRange> parseDelayRange(std::string_view s, std::string& error) {
  const auto fail = [&] {
    error = fmt::format(
        "--delay: '{}' is not MIN-MAX or one duration, e.g. 0-200ms, 50ms-1s, "
        "20ms",
        s);
    return std::nullopt;
  };
  const auto dash = s.find('-');
  if (dash == std::string_view::npos) {
    auto d = parseDuration(s);
    if (!d) return fail();
    return DelayRange{*d, *d};
  }
  const std::string_view lo_s = s.substr(0, dash), hi_s = s.substr(dash + 1);
  auto hi = parseDuration(hi_s);
  if (!hi || lo_s.empty()) return fail();
  auto lo = parseDuration(lo_s);
  if (!lo) {
    // "0-200ms": a bare MIN takes MAX's unit.
    std::size_t u = hi_s.size();
    while (u > 0 && std::isalpha(static_cast<unsigned char>(hi_s[u - 1]))) --u;
    lo = parseDuration(std::string(lo_s) + std::string(hi_s.substr(u)));
    if (!lo) return fail();
  }
  if (*lo > *hi) {
    error = fmt::format("--delay: MIN is above MAX in '{}'", s);
    return std::nullopt;
  }
  return DelayRange{*lo, *hi};
}

}  // namespace gw::sim
