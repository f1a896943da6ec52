#include "alerts/alert_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <span>
#include <stdexcept>
#include <tuple>

#include "core/slot_index.h"

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

/// Which rules select a series, in rule order. Interned: a plant's series mostly match the
/// same rules, so a series holds a 4-byte reference instead of a list.
struct Profile {
  std::vector<std::uint32_t> rules;
  bool has_no_data = false;
};

bool atRest(const State& st) { return st.phase == Phase::kOk && st.last_trigger == kNever; }

double seconds(Nanos d) { return static_cast<double>(d) / kNanosPerSecond; }

}  // namespace

struct AlertEngine::Impl {
  // Entries live in a slab addressed by index; the map finds a series' index. Deadlines (a
  // no_data_for expiry, the end of a held re-trigger, forgetting an idle series) are in a
  // min-heap with one valid item per entry, so tick() costs O(due entries · log n), never a
  // scan of every series. An item is valid while its generation and due match the entry's;
  // later deadlines are rescheduled lazily (when the earlier item pops), earlier ones push.
  //
  // A series' states (48 bytes per rule) exist only while one of them is not at rest (pending,
  // held, firing, or triggered once: min_retrigger remembers it); a series whose states are all
  // at rest (the usual one at scale) is its node alone (issue 13: 96 bytes per series before).
  struct Node {
    const InternedSeries* key = nullptr;  ///< the caller's (the journal's), or one of `restored`;
                                          ///< nullptr: the node is free
    Nanos last_seen = 0;                  ///< wall time of the last observation
    std::unique_ptr<State[]> states;      ///< one per rule of the profile; null: all at rest
    Nanos next_due = kNoDue;              ///< due of the one valid heap item; kNoDue: none
    std::uint32_t generation = 0;
    std::uint32_t profile = 0;  ///< index into profiles
  };
  static_assert(sizeof(void*) != 8 || sizeof(Node) <= 40);
  struct Due {
    Nanos at;
    std::uint32_t node, generation;
    bool operator>(const Due& o) const { return std::tie(at, node) > std::tie(o.at, o.node); }
  };
  static constexpr Nanos kNoDue = std::numeric_limits<Nanos>::max();

  std::vector<Rule> rules;
  std::vector<CompiledRule> compiled;
  explicit Impl(EngineOptions o) : options(std::move(o)), index(options.max_series) {}

  EngineOptions options;
  SlotIndex index;         ///< a series' hash -> its node, for the live nodes
  std::deque<Node> nodes;  // grows without copying (peak memory at 100,000 series)
  std::vector<std::uint32_t> free_nodes;
  /// Copies of the series that restore() brought back (no caller's series to point at yet);
  /// as many as firing alerts at start-up or reload, kept for the engine's life.
  struct Restored {
    explicit Restored(const Series& s) : series(s), interned(series) {}
    Series series;
    InternedSeries interned;  ///< refers to `series`' metric and tags
  };
  std::deque<Restored> restored;
  /// On a deque, not a vector: at 100,000 series a vector's doubling moved 1-2 MB at once on
  /// the event loop (3.5 of a 4.5 ms turn in a perf profile of the first flood, page faults
  /// of the new block included); a deque grows and shrinks by 512-byte blocks (issue 13).
  std::priority_queue<Due, std::deque<Due>, std::greater<>> due;
  std::set<std::uint64_t> firing_states;  ///< node << 32 | state index, of phase firing
  std::vector<std::uint32_t> scratch;     ///< find()'s list of matching rules
  std::vector<Profile> profiles;
  std::map<std::vector<std::uint32_t>, std::uint32_t> profile_ids;
  std::size_t states_held = 0;  ///< States allocated (for memoryBytes())
  EngineCounters counters;

  static bool beyond(const CompiledRule& c, double v) {
    return c.kind == Kind::kAbove ? v > c.trigger : v < c.trigger;
  }
  static Nanos plus(Nanos a, Nanos b) {  // b ≥ 0
    return a > kNoDue - b ? kNoDue : a + b;
  }

  template <class S>
  static std::uint32_t hashOf(const S& s) {
    return static_cast<std::uint32_t>(SeriesHash{}(s));
  }
  /// The live node of `s` (of hash `hash`), or SlotIndex::kNone.
  template <class S>
  std::uint32_t nodeOf(const S& s, std::uint32_t hash) const {
    return index.find(hash, [&](std::uint32_t node) { return *nodes[node].key == s; });
  }
  std::optional<std::uint32_t> lookup(const Series& s) const {
    const std::uint32_t node = nodeOf(s, hashOf(s));
    if (node == SlotIndex::kNone) return std::nullopt;
    return node;
  }

  void setPhase(std::uint32_t node, State& st, Phase p) {
    if (st.phase == p) return;
    const std::uint64_t key =
        std::uint64_t{node} << 32 | static_cast<std::uint32_t>(&st - nodes[node].states.get());
    counters.pending -= st.phase == Phase::kPending;
    counters.firing -= st.phase == Phase::kFiring;
    if (st.phase == Phase::kFiring) firing_states.erase(key);
    st.phase = p;
    counters.pending += p == Phase::kPending;
    counters.firing += p == Phase::kFiring;
    if (p == Phase::kFiring) firing_states.insert(key);
  }

  AlertEvent makeEvent(const InternedSeries& s, const State& st, AlertState state,
                       std::string_view stat, double value, double threshold, Nanos time,
                       Nanos window) const {
    const Rule& r = rules[st.rule];
    AlertEvent e;
    e.rule = r.name;
    e.series = s.toSeries();
    e.state = state;
    e.severity = compiled[st.rule].severity;
    e.statistic.assign(stat);
    e.value = value;
    e.threshold = threshold;
    e.time = time;
    e.window = window;
    e.dedup_key = dedupKey(options.gateway_id, r.name, e.series);
    e.notify = r.notify;
    return e;
  }

  std::string_view statisticOf(const State& st) const {
    const CompiledRule& c = compiled[st.rule];
    if (c.kind == Kind::kNoData) return kNoDataStatistic;
    return c.on_value ? std::string_view("value") : std::string_view(rules[st.rule].on);
  }

  /// The trigger event of a firing state (a firing_states key).
  AlertEvent firingEvent(std::uint64_t key) const {
    const Node& n = nodes[key >> 32];
    const State& st = n.states[key & 0xffffffffu];
    const CompiledRule& c = compiled[st.rule];
    const double threshold =
        c.kind == Kind::kNoData ? seconds(rules[st.rule].no_data_for) : c.trigger;
    return makeEvent(*n.key, st, AlertState::kFiring, statisticOf(st), st.value, threshold,
                     st.last_trigger, st.window);
  }

  void fire(std::uint32_t node, State& st, double value, Nanos time, Nanos window,
            std::vector<AlertEvent>& out) {
    setPhase(node, st, Phase::kFiring);
    st.last_trigger = time;
    st.value = value;
    st.window = window;
    ++counters.triggers;
    const CompiledRule& c = compiled[st.rule];
    const double threshold =
        c.kind == Kind::kNoData ? seconds(rules[st.rule].no_data_for) : c.trigger;
    out.push_back(makeEvent(*nodes[node].key, st, AlertState::kFiring, statisticOf(st), value,
                            threshold, time, window));
  }

  // The condition holds: fire, or hold back when the previous trigger is too recent.
  void trigger(std::uint32_t node, State& st, double value, Nanos time, Nanos window,
               std::vector<AlertEvent>& out) {
    if (st.last_trigger != kNever && time - st.last_trigger < rules[st.rule].min_retrigger) {
      setPhase(node, st, Phase::kHeld);
      st.value = value;
      st.window = window;
      ++counters.held;
      return;
    }
    fire(node, st, value, time, window, out);
  }

  void resolve(std::uint32_t node, State& st, double value, double threshold, Nanos time,
               Nanos window, std::vector<AlertEvent>& out) {
    setPhase(node, st, Phase::kOk);
    ++counters.resolves;
    out.push_back(makeEvent(*nodes[node].key, st, AlertState::kResolved, statisticOf(st), value,
                            threshold, time, window));
  }

  void evaluate(std::uint32_t node, State& st, double v, Nanos from, Nanos to, Nanos window,
                std::vector<AlertEvent>& out) {
    const CompiledRule& c = compiled[st.rule];
    assert(c.kind != Kind::kNoData);
    if (std::isnan(v)) {
      ++counters.ignored_nan;
      return;
    }
    const bool beyond = Impl::beyond(c, v);
    const bool cleared = c.kind == Kind::kAbove ? v < c.clear : v > c.clear;
    switch (st.phase) {
      case Phase::kOk:
        if (!beyond) return;
        setPhase(node, st, Phase::kPending);
        st.since = from;
        [[fallthrough]];
      case Phase::kPending:
        if (!beyond) {
          setPhase(node, st, Phase::kOk);
          return;
        }
        if (to - st.since >= rules[st.rule].for_duration) trigger(node, st, v, to, window, out);
        return;
      case Phase::kHeld:
        if (cleared) {
          setPhase(node, st, Phase::kOk);
          ++counters.suppressed;
          return;
        }
        if (beyond) {
          st.value = v;
          st.window = window;
        }
        if (to - st.last_trigger >= rules[st.rule].min_retrigger) {
          ++counters.delayed;
          fire(node, st, st.value, to, st.window, out);
        }
        return;
      case Phase::kFiring:
        if (cleared) resolve(node, st, v, c.clear, to, window, out);
        return;
    }
  }

  // Data arrived for a series (observed at wall time `now`, event time `time`).
  void alive(std::uint32_t node, Nanos time, Nanos now, std::vector<AlertEvent>& out) {
    Node& n = nodes[node];
    if (n.states && profiles[n.profile].has_no_data) {
      const Nanos silent = now - n.last_seen;
      for (State& st : statesOf(n)) {
        if (compiled[st.rule].kind != Kind::kNoData) continue;
        if (st.phase == Phase::kFiring) {
          resolve(node, st, seconds(silent), seconds(rules[st.rule].no_data_for), time, 0, out);
        } else if (st.phase == Phase::kHeld) {
          setPhase(node, st, Phase::kOk);
          ++counters.suppressed;
        }
      }
    }
    n.last_seen = std::max(n.last_seen, now);
  }

  std::span<State> statesOf(Node& n) {
    return {n.states.get(), n.states ? profiles[n.profile].rules.size() : 0};
  }
  /// The node's states, made (all at rest) when it has none.
  void wake(std::uint32_t node) {
    Node& n = nodes[node];
    if (n.states) return;
    const Profile& p = profiles[n.profile];
    n.states = std::make_unique<State[]>(p.rules.size());
    for (std::size_t i = 0; i < p.rules.size(); ++i) n.states[i].rule = p.rules[i];
    states_held += p.rules.size();
  }
  /// Drops the node's states when all are at rest again.
  void settle(std::uint32_t node) {
    Node& n = nodes[node];
    const std::span<State> states = statesOf(n);
    if (!n.states || !std::all_of(states.begin(), states.end(), atRest)) return;
    states_held -= states.size();
    n.states.reset();
  }
  std::uint32_t profileOf(const std::vector<std::uint32_t>& matched) {
    const auto [it, added] =
        profile_ids.try_emplace(matched, static_cast<std::uint32_t>(profiles.size()));
    if (added) {
      Profile& p = profiles.emplace_back();
      p.rules = matched;
      for (std::uint32_t r : matched) p.has_no_data |= compiled[r].kind == Kind::kNoData;
    }
    return it->second;
  }

  /// Firing and held states keep a series; anything else may be forgotten when idle.
  bool forgettable(const Node& n) const {
    if (!n.states) return true;
    const State* st = n.states.get();
    return std::none_of(st, st + profiles[n.profile].rules.size(), [](const State& s) {
      return s.phase == Phase::kFiring || s.phase == Phase::kHeld;
    });
  }

  /// The earliest wall time at which tick() has something to do for this entry.
  Nanos nextDue(const Node& n) const {
    Nanos at = forgettable(n) ? plus(n.last_seen, options.forget_after) : kNoDue;
    const Profile& p = profiles[n.profile];
    for (std::size_t i = 0; i < p.rules.size(); ++i) {
      const Rule& r = rules[p.rules[i]];
      const Phase phase = n.states ? n.states[i].phase : Phase::kOk;
      if (compiled[p.rules[i]].kind == Kind::kNoData && phase == Phase::kOk)
        at = std::min(at, plus(n.last_seen, r.no_data_for));
      if (phase == Phase::kHeld) at = std::min(at, plus(n.states[i].last_trigger, r.min_retrigger));
    }
    return at;
  }

  /// After a change to the entry: a heap item for an earlier deadline (later ones are lazy).
  void reschedule(std::uint32_t node) {
    Node& n = nodes[node];
    const Nanos at = nextDue(n);
    if (at >= n.next_due) return;
    n.next_due = at;
    due.push({at, node, n.generation});
  }

  /// The node of `s`, made when new (keeping a pointer to `s`: it must stay valid).
  std::optional<std::uint32_t> find(const InternedSeries& s, Nanos now) {
    const std::uint32_t hash = hashOf(s);
    if (const std::uint32_t node = nodeOf(s, hash); node != SlotIndex::kNone) return node;
    std::vector<std::uint32_t>& matched = scratch;
    matched.clear();
    for (std::uint32_t i = 0; i < rules.size(); ++i)
      if (matches(rules[i], s)) matched.push_back(i);
    if (matched.empty()) return std::nullopt;
    if (index.size() >= options.max_series) {
      ++counters.series_over_cap;
      return std::nullopt;
    }
    std::uint32_t node = 0;
    if (!free_nodes.empty()) {
      node = free_nodes.back();
      free_nodes.pop_back();
    } else {
      if (nodes.size() >= std::numeric_limits<std::uint32_t>::max()) return std::nullopt;
      node = static_cast<std::uint32_t>(nodes.size());
      nodes.emplace_back();
    }
    Node& n = nodes[node];
    n.profile = profileOf(matched);
    n.states.reset();
    n.last_seen = now;
    n.key = &s;
    n.next_due = kNoDue;
    index.insert(node, hash);
    reschedule(node);
    return node;
  }

  void forget(std::uint32_t node) {
    Node& n = nodes[node];
    assert(forgettable(n));
    for (const State& st : statesOf(n)) counters.pending -= st.phase == Phase::kPending;
    index.erase(node, hashOf(*n.key));
    index.shrink();
    states_held -= statesOf(n).size();
    n.states.reset();
    n.key = nullptr;
    n.next_due = kNoDue;
    ++n.generation;  // its heap items are stale now
    free_nodes.push_back(node);
  }

  /// What tick() does for one entry whose deadline came.
  void onDue(std::uint32_t node, Nanos now, std::vector<AlertEvent>& out) {
    Node& n = nodes[node];
    if (!n.states) {  // all at rest: only a no_data_for expiry changes a state
      for (const std::uint32_t r : profiles[n.profile].rules) {
        if (compiled[r].kind == Kind::kNoData && now - n.last_seen >= rules[r].no_data_for) {
          wake(node);
          break;
        }
      }
    }
    for (State& st : statesOf(n)) {
      const Rule& r = rules[st.rule];
      if (compiled[st.rule].kind == Kind::kNoData) {
        const Nanos silent = now - n.last_seen;
        if (st.phase == Phase::kOk && silent >= r.no_data_for) {
          trigger(node, st, seconds(silent), now, 0, out);
        } else if (st.phase == Phase::kHeld && now - st.last_trigger >= r.min_retrigger) {
          ++counters.delayed;
          fire(node, st, seconds(silent), now, 0, out);
        }
        continue;
      }
      if (st.phase == Phase::kHeld && now - st.last_trigger >= r.min_retrigger) {
        ++counters.delayed;
        fire(node, st, st.value, now, st.window, out);
      }
    }
    if (forgettable(n) && now - n.last_seen >= options.forget_after) return forget(node);
    settle(node);
    reschedule(node);
  }
};

AlertEngine::AlertEngine(std::vector<Rule> rules, EngineOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  if (const auto errors = validateRules(rules); !errors.empty())
    throw std::invalid_argument(fmt::format("{}: {}", errors[0].key, errors[0].message));
  if (rules.size() > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("too many alert rules");
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

void AlertEngine::onReading(const InternedSeries& series, double value, Nanos event_time, Nanos now,
                            std::vector<AlertEvent>& out) {
  Impl& m = *impl_;
  const auto node = m.find(series, now);
  if (!node) return;
  m.alive(*node, event_time, now, out);
  Impl::Node& n = m.nodes[*node];
  if (!n.states) {  // all at rest: only a value beyond a threshold changes a state
    bool wake = false;
    for (const std::uint32_t r : m.profiles[n.profile].rules) {
      const CompiledRule& c = m.compiled[r];
      if (c.kind == Kind::kNoData || !c.on_value) continue;
      if (std::isnan(value))
        ++m.counters.ignored_nan;
      else
        wake |= Impl::beyond(c, value);
    }
    if (!wake) return m.reschedule(*node);
    m.wake(*node);
  }
  for (State& st : m.statesOf(n)) {
    const CompiledRule& c = m.compiled[st.rule];
    if (c.kind != Kind::kNoData && c.on_value)
      m.evaluate(*node, st, value, event_time, event_time, 0, out);
  }
  m.settle(*node);
  m.reschedule(*node);
}

void AlertEngine::onWindow(const InternedSeries& series, Nanos window_start, Nanos window_end,
                           std::span<const Statistic> stats, Nanos now,
                           std::vector<AlertEvent>& out) {
  Impl& m = *impl_;
  const auto node = m.find(series, now);
  if (!node) return;
  // A window closing is not data: a silent series' window closes by wall time after its last
  // reading (already seen by onReading), and counting the close as data resolved the series'
  // no_data alert, which then fired again (a flap whenever no_data_for < the window).
  Impl::Node& n = m.nodes[*node];
  if (!n.states) {  // all at rest: only a statistic beyond a threshold changes a state
    bool wake = false;
    for (const std::uint32_t r : m.profiles[n.profile].rules) {
      const CompiledRule& c = m.compiled[r];
      if (c.kind == Kind::kNoData || c.on_value) continue;
      for (const Statistic& stat : stats) {
        if (stat.name != m.rules[r].on) continue;
        if (std::isnan(stat.value))
          ++m.counters.ignored_nan;
        else
          wake |= Impl::beyond(c, stat.value);
        break;
      }
    }
    if (!wake) return m.reschedule(*node);
    m.wake(*node);
  }
  for (State& st : m.statesOf(n)) {
    const CompiledRule& c = m.compiled[st.rule];
    if (c.kind == Kind::kNoData || c.on_value) continue;
    for (const Statistic& stat : stats) {
      if (stat.name != m.rules[st.rule].on) continue;
      m.evaluate(*node, st, stat.value, window_start, window_end, window_end - window_start, out);
      break;
    }
  }
  m.settle(*node);
  m.reschedule(*node);
}

bool AlertEngine::tick(Nanos now, std::vector<AlertEvent>& out, std::size_t max_due) {
  Impl& m = *impl_;
  std::size_t handled = 0;
  while (!m.due.empty() && m.due.top().at <= now) {
    if (handled == max_due) return true;
    const Impl::Due d = m.due.top();
    m.due.pop();
    Impl::Node& n = m.nodes[d.node];
    if (n.key == nullptr || n.generation != d.generation || n.next_due != d.at) continue;  // stale
    n.next_due = Impl::kNoDue;
    m.onDue(d.node, now, out);
    ++handled;
  }
  return false;
}

bool AlertEngine::restore(const AlertEvent& firing, Nanos now) {
  return restoreAt(firing, nullptr, now);
}

bool AlertEngine::restore(const AlertEvent& firing, const InternedSeries& series, Nanos now) {
  return restoreAt(firing, &series, now);
}

bool AlertEngine::restoreAt(const AlertEvent& firing, const InternedSeries* series, Nanos now) {
  Impl& m = *impl_;
  std::optional<std::uint32_t> node = m.lookup(firing.series);
  if (!node) {
    const std::size_t cap = m.options.max_series;
    m.options.max_series = std::numeric_limits<std::size_t>::max();  // start-up: never refuse
    if (series) {
      node = m.find(*series, now);
    } else {
      node = m.find(m.restored.emplace_back(firing.series).interned, now);
      if (!node) m.restored.pop_back();
    }
    m.options.max_series = cap;
  }
  if (!node) return false;
  m.wake(*node);
  for (State& st : m.statesOf(m.nodes[*node])) {
    if (m.rules[st.rule].name != firing.rule) continue;
    m.setPhase(*node, st, Phase::kFiring);
    st.last_trigger = firing.time;
    st.value = firing.value;
    st.window = firing.window;
    return true;
  }
  m.settle(*node);
  return false;
}

std::vector<AlertEvent> AlertEngine::firing(std::size_t max) const {
  std::vector<AlertEvent> out;
  out.reserve(std::min(max, impl_->firing_states.size()));
  const Impl& m = *impl_;
  for (const std::uint64_t key : m.firing_states) {
    if (out.size() >= max) break;
    out.push_back(m.firingEvent(key));
  }
  return out;
}

void AlertEngine::forEachFiring(const std::function<void(const AlertEvent&)>& visit) const {
  const Impl& m = *impl_;
  for (const std::uint64_t key : m.firing_states) visit(m.firingEvent(key));
}

std::size_t AlertEngine::memoryBytes() const {
  const Impl& m = *impl_;
  // The heap's items: a priority_queue's container is not accessible, its size is (the
  // capacity is at most twice that).
  return m.nodes.size() * sizeof(Impl::Node) + m.index.memoryBytes() +
         m.due.size() * sizeof(Impl::Due) + m.free_nodes.capacity() * sizeof(std::uint32_t) +
         m.restored.size() * sizeof(Impl::Restored) + m.states_held * sizeof(State) +
         m.profiles.size() * sizeof(Profile);
}

std::size_t AlertEngine::firingCount() const { return impl_->firing_states.size(); }

EngineCounters AlertEngine::counters() const {
  EngineCounters c = impl_->counters;
  c.series = impl_->index.size();
  return c;
}

AlertEvent resolvedFrom(const AlertEvent& firing, Nanos time) {
  AlertEvent e = firing;
  e.state = AlertState::kResolved;
  e.time = time;
  return e;
}

}  // namespace gw::alerts
