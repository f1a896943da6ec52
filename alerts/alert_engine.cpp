#include "alerts/alert_engine.h"

#include <fmt/format.h>

#include <cassert>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_map>

namespace gw::alerts {
namespace {

constexpr Nanos kNever = std::numeric_limits<Nanos>::min();

enum class Kind : std::uint8_t { kAbove, kBelow, kNoData };
enum class Phase : std::uint8_t { kOk, kPending, kHeld, kFiring };

struct CompiledRule {
  Kind kind = Kind::kAbove;
  Severity severity = Severity::kWarning;
  bool on_value = true;  ///< evaluated on readings (else on the window statistic `rule.on`)
  double trigger = 0;
  double clear = 0;
};

// 48 bytes: the whole per rule × series state.
struct State {
  Nanos since = 0;  ///< pending: start of the first sample beyond the threshold
  Nanos last_trigger = kNever;
  Nanos window = 0;        ///< window length of the last sample beyond (for a held trigger)
  double value = 0;        ///< last value beyond the threshold (for a held trigger)
  std::uint32_t rule = 0;  ///< index into rules
  Phase phase = Phase::kOk;
};
static_assert(sizeof(State) <= 48);

struct Entry {
  std::vector<State> states;
  Nanos last_seen = 0;  ///< wall time of the last observation
  bool has_no_data = false;
};

double seconds(Nanos d) { return static_cast<double>(d) / kNanosPerSecond; }

}  // namespace

struct AlertEngine::Impl {
  std::vector<Rule> rules;
  std::vector<CompiledRule> compiled;
  EngineOptions options;
  std::unordered_map<Series, Entry, SeriesHash> series;
  EngineCounters counters;

  AlertEvent makeEvent(const Series& s, const State& st, AlertState state, std::string_view stat,
                       double value, double threshold, Nanos time, Nanos window) const {
    const Rule& r = rules[st.rule];
    AlertEvent e;
    e.rule = r.name;
    e.series = s;
    e.state = state;
    e.severity = compiled[st.rule].severity;
    e.statistic.assign(stat);
    e.value = value;
    e.threshold = threshold;
    e.time = time;
    e.window = window;
    e.dedup_key = dedupKey(options.gateway_id, r.name, s);
    e.notify = r.notify;
    return e;
  }

  std::string_view statisticOf(const State& st) const {
    const CompiledRule& c = compiled[st.rule];
    if (c.kind == Kind::kNoData) return kNoDataStatistic;
    return c.on_value ? std::string_view("value") : std::string_view(rules[st.rule].on);
  }

  void fire(const Series& s, State& st, double value, Nanos time, Nanos window,
            std::vector<AlertEvent>& out) {
    st.phase = Phase::kFiring;
    st.last_trigger = time;
    st.value = value;
    st.window = window;
    ++counters.triggers;
    const CompiledRule& c = compiled[st.rule];
    const double threshold =
        c.kind == Kind::kNoData ? seconds(rules[st.rule].no_data_for) : c.trigger;
    out.push_back(
        makeEvent(s, st, AlertState::kFiring, statisticOf(st), value, threshold, time, window));
  }

  // The condition holds: fire, or hold back when the previous trigger is too recent.
  void trigger(const Series& s, State& st, double value, Nanos time, Nanos window,
               std::vector<AlertEvent>& out) {
    if (st.last_trigger != kNever && time - st.last_trigger < rules[st.rule].min_retrigger) {
      st.phase = Phase::kHeld;
      st.value = value;
      st.window = window;
      ++counters.held;
      return;
    }
    fire(s, st, value, time, window, out);
  }

  void resolve(const Series& s, State& st, double value, double threshold, Nanos time, Nanos window,
               std::vector<AlertEvent>& out) {
    st.phase = Phase::kOk;
    ++counters.resolves;
    out.push_back(
        makeEvent(s, st, AlertState::kResolved, statisticOf(st), value, threshold, time, window));
  }

  void evaluate(const Series& s, State& st, double v, Nanos from, Nanos to, Nanos window,
                std::vector<AlertEvent>& out) {
    const CompiledRule& c = compiled[st.rule];
    assert(c.kind != Kind::kNoData);
    if (std::isnan(v)) {
      ++counters.ignored_nan;
      return;
    }
    const bool beyond = c.kind == Kind::kAbove ? v > c.trigger : v < c.trigger;
    const bool cleared = c.kind == Kind::kAbove ? v < c.clear : v > c.clear;
    switch (st.phase) {
      case Phase::kOk:
        if (!beyond) return;
        st.phase = Phase::kPending;
        st.since = from;
        [[fallthrough]];
      case Phase::kPending:
        if (!beyond) {
          st.phase = Phase::kOk;
          return;
        }
        if (to - st.since >= rules[st.rule].for_duration) trigger(s, st, v, to, window, out);
        return;
      case Phase::kHeld:
        if (cleared) {
          st.phase = Phase::kOk;
          ++counters.suppressed;
          return;
        }
        if (beyond) {
          st.value = v;
          st.window = window;
        }
        if (to - st.last_trigger >= rules[st.rule].min_retrigger) {
          ++counters.delayed;
          fire(s, st, st.value, to, st.window, out);
        }
        return;
      case Phase::kFiring:
        if (cleared) resolve(s, st, v, c.clear, to, window, out);
        return;
    }
  }

  // Data arrived for a series (observed at wall time `now`, event time `time`).
  void alive(const Series& s, Entry& entry, Nanos time, Nanos now, std::vector<AlertEvent>& out) {
    if (entry.has_no_data) {
      const Nanos silent = now - entry.last_seen;
      for (State& st : entry.states) {
        if (compiled[st.rule].kind != Kind::kNoData) continue;
        if (st.phase == Phase::kFiring) {
          resolve(s, st, seconds(silent), seconds(rules[st.rule].no_data_for), time, 0, out);
        } else if (st.phase == Phase::kHeld) {
          st.phase = Phase::kOk;
          ++counters.suppressed;
        }
      }
    }
    entry.last_seen = std::max(entry.last_seen, now);
  }

  Entry* find(const Series& s, Nanos now) {
    if (auto it = series.find(s); it != series.end()) return &it->second;
    Entry entry;
    for (std::uint32_t i = 0; i < rules.size(); ++i) {
      if (!matches(rules[i], s)) continue;
      State st;
      st.rule = i;
      entry.states.push_back(st);
      entry.has_no_data |= compiled[i].kind == Kind::kNoData;
    }
    if (entry.states.empty()) return nullptr;
    if (series.size() >= options.max_series) {
      ++counters.series_over_cap;
      return nullptr;
    }
    entry.states.shrink_to_fit();
    entry.last_seen = now;
    return &series.emplace(s, std::move(entry)).first->second;
  }
};

AlertEngine::AlertEngine(std::vector<Rule> rules, EngineOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (const auto errors = validateRules(rules); !errors.empty())
    throw std::invalid_argument(fmt::format("{}: {}", errors[0].key, errors[0].message));
  if (rules.size() > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("too many alert rules");
  impl_->options = std::move(options);
  for (const Rule& r : rules) {
    CompiledRule c;
    c.severity = *parseSeverity(r.severity);
    c.on_value = r.on == "value";
    if (r.above) {
      c.kind = Kind::kAbove;
      c.trigger = *r.above;
      c.clear = r.clear_below.value_or(*r.above);
    } else if (r.below) {
      c.kind = Kind::kBelow;
      c.trigger = *r.below;
      c.clear = r.clear_above.value_or(*r.below);
    } else {
      c.kind = Kind::kNoData;
    }
    impl_->compiled.push_back(c);
  }
  impl_->rules = std::move(rules);
}

AlertEngine::~AlertEngine() = default;

const std::vector<Rule>& AlertEngine::rules() const { return impl_->rules; }

void AlertEngine::onReading(const Series& series, double value, Nanos event_time, Nanos now,
                            std::vector<AlertEvent>& out) {
  Entry* entry = impl_->find(series, now);
  if (!entry) return;
  impl_->alive(series, *entry, event_time, now, out);
  for (State& st : entry->states) {
    const CompiledRule& c = impl_->compiled[st.rule];
    if (c.kind != Kind::kNoData && c.on_value)
      impl_->evaluate(series, st, value, event_time, event_time, 0, out);
  }
}

void AlertEngine::onWindow(const Series& series, Nanos window_start, Nanos window_end,
                           std::span<const Statistic> stats, Nanos now,
                           std::vector<AlertEvent>& out) {
  Entry* entry = impl_->find(series, now);
  if (!entry) return;
  impl_->alive(series, *entry, window_end, now, out);
  for (State& st : entry->states) {
    const CompiledRule& c = impl_->compiled[st.rule];
    if (c.kind == Kind::kNoData || c.on_value) continue;
    for (const Statistic& stat : stats) {
      if (stat.name != impl_->rules[st.rule].on) continue;
      impl_->evaluate(series, st, stat.value, window_start, window_end, window_end - window_start,
                      out);
      break;
    }
  }
}

void AlertEngine::tick(Nanos now, std::vector<AlertEvent>& out) {
  Impl& m = *impl_;
  for (auto it = m.series.begin(); it != m.series.end();) {
    const Series& s = it->first;
    Entry& entry = it->second;
    bool busy = entry.has_no_data;
    for (State& st : entry.states) {
      const Rule& r = m.rules[st.rule];
      if (m.compiled[st.rule].kind == Kind::kNoData) {
        const Nanos silent = now - entry.last_seen;
        if (st.phase == Phase::kOk && silent >= r.no_data_for) {
          m.trigger(s, st, seconds(silent), now, 0, out);
        } else if (st.phase == Phase::kHeld && now - st.last_trigger >= r.min_retrigger) {
          ++m.counters.delayed;
          m.fire(s, st, seconds(silent), now, 0, out);
        }
        continue;
      }
      if (st.phase == Phase::kHeld && now - st.last_trigger >= r.min_retrigger) {
        ++m.counters.delayed;
        m.fire(s, st, st.value, now, st.window, out);
      }
      busy |= st.phase != Phase::kOk;
    }
    if (!busy && now - entry.last_seen >= m.options.forget_after) {
      it = m.series.erase(it);
    } else {
      ++it;
    }
  }
}

bool AlertEngine::restore(const AlertEvent& firing, Nanos now) {
  Impl& m = *impl_;
  Entry* entry = nullptr;
  if (auto it = m.series.find(firing.series); it != m.series.end()) {
    entry = &it->second;
  } else {
    const std::size_t cap = m.options.max_series;
    m.options.max_series = std::numeric_limits<std::size_t>::max();  // start-up: never refuse
    entry = m.find(firing.series, now);
    m.options.max_series = cap;
  }
  if (!entry) return false;
  for (State& st : entry->states) {
    if (m.rules[st.rule].name != firing.rule) continue;
    st.phase = Phase::kFiring;
    st.last_trigger = firing.time;
    st.value = firing.value;
    st.window = firing.window;
    return true;
  }
  return false;
}

std::vector<AlertEvent> AlertEngine::firing() const {
  const Impl& m = *impl_;
  std::vector<AlertEvent> out;
  for (const auto& [s, entry] : m.series) {
    for (const State& st : entry.states) {
      if (st.phase != Phase::kFiring) continue;
      const CompiledRule& c = m.compiled[st.rule];
      const double threshold =
          c.kind == Kind::kNoData ? seconds(m.rules[st.rule].no_data_for) : c.trigger;
      out.push_back(m.makeEvent(s, st, AlertState::kFiring, m.statisticOf(st), st.value, threshold,
                                st.last_trigger, st.window));
    }
  }
  return out;
}

EngineCounters AlertEngine::counters() const {
  EngineCounters c = impl_->counters;
  c.series = impl_->series.size();
  c.pending = c.firing = 0;
  for (const auto& [s, entry] : impl_->series) {
    for (const State& st : entry.states) {
      c.pending += st.phase == Phase::kPending;
      c.firing += st.phase == Phase::kFiring;
    }
  }
  return c;
}

AlertEvent resolvedFrom(const AlertEvent& firing, Nanos time) {
  AlertEvent e = firing;
  e.state = AlertState::kResolved;
  e.time = time;
  return e;
}

}  // namespace gw::alerts
