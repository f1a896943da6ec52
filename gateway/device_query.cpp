#include "gateway/device_query.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "alerts/rule.h"
#include "gateway/clock_table.h"
#include "gateway/status.h"

namespace gw {
namespace {

std::string_view nextWord(std::string_view& s) {
  const auto b = s.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    s = {};
    return {};
  }
  s.remove_prefix(b);
  const auto e = std::min(s.find(' '), s.size());
  const std::string_view w = s.substr(0, e);
  s.remove_prefix(e);
  return w;
}

}  // namespace

std::optional<DeviceQuery::Sort> parseDeviceSort(std::string_view key) {
  using S = DeviceQuery::Sort;
  if (key == "attention") return S::kAttention;
  if (key == "name") return S::kName;
  if (key == "last_seen") return S::kLastSeen;
  if (key == "rate") return S::kRate;
  if (key == "offset") return S::kOffset;
  return std::nullopt;
}

std::optional<std::string> parseDeviceQuery(std::string_view args, DeviceQuery& q) {
  bool pattern_seen = false;
  for (std::string_view w = nextWord(args); !w.empty(); w = nextWord(args)) {
    if (w == "--limit") {
      const std::string_view n = nextWord(args);
      std::size_t v = 0;
      const auto r = std::from_chars(n.data(), n.data() + n.size(), v);
      if (n.empty() || r.ec != std::errc() || r.ptr != n.data() + n.size())
        return "--limit needs a number (0: all)";
      q.limit = v;
    } else if (w == "--sort") {
      const auto sort = parseDeviceSort(nextWord(args));
      if (!sort) return "--sort is one of attention, name, last_seen, rate, offset";
      q.sort = *sort;
    } else if (!pattern_seen && !w.starts_with("--")) {
      q.pattern.assign(w);
      pattern_seen = true;
    } else {
      return "unexpected '" + std::string(w) + "' (sensors [PATTERN] [--limit N] [--sort KEY])";
    }
  }
  return std::nullopt;
}

std::vector<DeviceClockStatus> selectDevices(const clock::ClockTable& clocks, const DeviceQuery& q,
                                             Nanos mono_now, std::uint64_t& matched) {
  struct Candidate {
    const std::string* device;
    const clock::ClockTable::Entry* entry;
    double rate;  // < 0: none
  };
  std::vector<Candidate> c;
  const bool all = q.pattern == "*";
  clocks.forEach([&](const std::string& device, const clock::ClockTable::Entry& e) {
    if (all || alerts::globMatch(q.pattern, device)) c.push_back({&device, &e, -1});
  });
  matched = c.size();
  if (q.sort == DeviceQuery::Sort::kRate)
    for (auto& x : c) x.rate = clocks.rate(*x.entry, mono_now).value_or(-1);
  auto less = [&q](const Candidate& a, const Candidate& b) {
    const clock::DeviceClock& x = a.entry->estimator.state();
    const clock::DeviceClock& y = b.entry->estimator.state();
    switch (q.sort) {
      case DeviceQuery::Sort::kAttention:
        if (x.out_of_bounds != y.out_of_bounds) return x.out_of_bounds;
        if (x.converged != y.converged) return !x.converged;
        if (a.entry->last_use != b.entry->last_use) return a.entry->last_use < b.entry->last_use;
        break;
      case DeviceQuery::Sort::kName:
        break;
      case DeviceQuery::Sort::kLastSeen:
        if (a.entry->last_use != b.entry->last_use) return a.entry->last_use > b.entry->last_use;
        break;
      case DeviceQuery::Sort::kRate:
        if (a.rate != b.rate) return a.rate > b.rate;
        break;
      case DeviceQuery::Sort::kOffset: {
        const auto ax = std::abs(x.offset), ay = std::abs(y.offset);
        if (ax != ay) return ax > ay;
        break;
      }
    }
    return *a.device < *b.device;
  };
  const std::size_t n = q.limit == 0 ? c.size() : std::min(q.limit, c.size());
  std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(n), c.end(), less);
  std::vector<DeviceClockStatus> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    DeviceClockStatus& d = out.emplace_back();
    d.device = *c[i].device;
    d.clock = c[i].entry->estimator.state();
    d.rate = clocks.rate(*c[i].entry, mono_now);
  }
  return out;
}

}  // namespace gw
