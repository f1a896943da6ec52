#include "gateway/device_query.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_set>

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

struct DeviceWalk::Candidate {
  DeviceClockStatus status;
  Nanos last_use = 0;
  double rate = -1;  // < 0: none
};

DeviceWalk::DeviceWalk(DeviceQuery q) : q_(std::move(q)) {
  if (q_.limit != 0) best_.reserve(std::min<std::size_t>(q_.limit, 4096) + 1);
}

DeviceWalk::~DeviceWalk() = default;

/// Whether `a` comes before `b` in the query's order (names break ties: a total order).
bool DeviceWalk::better(const Candidate& a, const Candidate& b) const {
  const clock::DeviceClock& x = a.status.clock;
  const clock::DeviceClock& y = b.status.clock;
  switch (q_.sort) {
    case DeviceQuery::Sort::kAttention:
      if (x.out_of_bounds != y.out_of_bounds) return x.out_of_bounds;
      if (x.converged != y.converged) return !x.converged;
      if (a.last_use != b.last_use) return a.last_use < b.last_use;
      break;
    case DeviceQuery::Sort::kName:
      break;
    case DeviceQuery::Sort::kLastSeen:
      if (a.last_use != b.last_use) return a.last_use > b.last_use;
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
  return a.status.device < b.status.device;
}

bool DeviceWalk::step(const clock::ClockTable& clocks, Nanos mono_now, std::size_t slice) {
  const bool all = q_.pattern == "*";
  const std::size_t begin = next_, end = next_ + std::max<std::size_t>(slice, 1);
  const auto worse = [this](const Candidate& a, const Candidate& b) { return better(a, b); };
  Candidate c;
  const std::size_t pos = clocks.forEachIn(
      begin, end, [&](const std::string& device, const clock::ClockTable::Entry& e) {
        if (!all && !alerts::globMatch(q_.pattern, device)) return;
        ++matched_;
        c.last_use = e.last_use;
        c.status.clock = e.estimator.state();
        if (q_.sort == DeviceQuery::Sort::kRate) c.rate = clocks.rate(e, mono_now).value_or(-1);
        if (q_.limit != 0 && best_.size() >= q_.limit) {
          // Cheap rejection first: most devices are not among the best `limit`.
          c.status.device.assign(device);
          if (!better(c, best_.front())) return;
          std::pop_heap(best_.begin(), best_.end(), worse);
          best_.pop_back();
        } else {
          c.status.device.assign(device);
        }
        c.status.rate = clocks.rate(e, mono_now);
        best_.push_back(c);
        std::push_heap(best_.begin(), best_.end(), worse);
      });
  examined_ = std::min(pos, end) - std::min(pos, begin);
  ++steps_;
  next_ = end;
  return pos <= end;
}

std::vector<DeviceClockStatus> DeviceWalk::take(std::uint64_t& matched) {
  std::sort(best_.begin(), best_.end(),
            [this](const Candidate& a, const Candidate& b) { return better(a, b); });
  std::vector<DeviceClockStatus> out;
  out.reserve(best_.size());
  // A device seen twice (the table changed between steps) is listed once, where it ranked
  // first.
  std::unordered_set<std::string_view> listed;
  if (steps_ > 1) listed.reserve(best_.size());
  for (auto& c : best_) {
    if (steps_ > 1 && listed.contains(c.status.device)) continue;
    out.push_back(std::move(c.status));  // no reallocation (reserved): the views stay valid
    if (steps_ > 1) listed.insert(out.back().device);
  }
  best_.clear();
  matched = matched_;
  return out;
}

std::vector<DeviceClockStatus> selectDevices(const clock::ClockTable& clocks, const DeviceQuery& q,
                                             Nanos mono_now, std::uint64_t& matched) {
  DeviceWalk walk(q);
  walk.step(clocks, mono_now, std::numeric_limits<std::size_t>::max() / 2);
  return walk.take(matched);
}

}  // namespace gw
