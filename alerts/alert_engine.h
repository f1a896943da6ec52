// Evaluates alert rules on readings and window statistics: one state machine per
// rule × series (ok → pending → firing → ok); only transitions produce events.
//
// Time is injected (conventions: "Inject time"); nothing in here reads a clock:
// - thresholds and `for` run on the samples' event time (a reading's corrected event_time, a
//   window's start/end), so a replayed backlog gives the same events as live data;
// - `no_data_for` and the release of held re-triggers run on `now`, the wall time the caller
//   passes to every call (the pipeline's clock), because silence has no event time.
//
// Semantics, per rule × series:
// - above-rule: beyond = value > above; cleared = value < clear_below (default above).
//   below-rule: the mirror. A value equal to a threshold keeps the current state.
// - ok → pending on the first sample beyond; pending → ok on any sample not beyond;
//   pending → firing once samples stayed beyond for `for` (last sample's end − first sample's
//   start ≥ for; for = 0 fires on the first sample). firing → ok (resolve event) on a sample
//   that is cleared. Between clear and trigger threshold the state holds (hysteresis).
// - A trigger within `min_retrigger` of the previous trigger of the same rule × series is held
//   back (state "held", counted): if the condition clears before the interval ends it is
//   dropped without any event (counted as suppressed); if it still holds when the interval
//   ends (next sample or tick), the trigger is sent then (counted as delayed). So flapping
//   input yields at most one trigger and one resolve per interval, and a real problem that
//   persists is never swallowed.
// - no_data_for: a series that this rule selects and that has been seen at least once fires
//   on tick(now) when nothing arrived for no_data_for; the next observation resolves it.
// - NaN values are ignored (counted); they still count as data for no_data_for.
//
// Memory: one entry per series that at least one rule selects (series not selected by any
// rule cost nothing): a 40-byte node (x86-64) with a pointer to the caller's series (no copy:
// issue 13) and a reference to the list of rules that select it (shared by every series they
// select), ~16 bytes of index (open addressing, nothing reserved up front) and a 16-byte item
// of the deadlines' heap. A series' states (48 bytes per selecting rule) exist only while one
// of them is not at rest (pending, held, firing, or triggered before: min_retrigger remembers
// it); at scale most series have none. At most
// `max_series` entries; beyond that new series are not evaluated and are counted. Entries
// idle for `forget_after` with no state firing or held are dropped on tick (a series with a
// no_data_for rule fires first, so it stays until its data returns: no incident left open).
//
// Cost: deadlines (no_data_for, held re-triggers, forgetting) are in a min-heap, so tick() is
// O(due · log n) and counters() O(1); firing() is O(firing). Nothing scans every series.
//
// Threading: single-threaded (the pipeline's event loop).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alerts/alert_event.h"
#include "alerts/rule.h"
#include "core/reading.h"
#include "core/time.h"

namespace gw::alerts {

struct EngineOptions {
  std::string gateway_id = "gateway";  ///< first part of every dedup key
  std::size_t max_series = 100'000;
  Nanos forget_after = 3600 * kNanosPerSecond;
};

/// One statistic of a closed window, as the windows emit it.
struct Statistic {
  std::string_view name;  ///< "count", "p95", …
  double value = 0;
};

struct EngineCounters {
  std::uint64_t triggers = 0;         ///< trigger events emitted (including delayed)
  std::uint64_t resolves = 0;         ///< resolve events emitted
  std::uint64_t held = 0;             ///< re-triggers held back by min_retrigger
  std::uint64_t suppressed = 0;       ///< held re-triggers that cleared in time: no event at all
  std::uint64_t delayed = 0;          ///< held re-triggers sent when the interval ended
  std::uint64_t ignored_nan = 0;      ///< NaN samples skipped
  std::uint64_t series_over_cap = 0;  ///< observations of new series refused by max_series
  std::uint64_t series = 0;           ///< tracked now
  std::uint64_t pending = 0;          ///< states pending now
  std::uint64_t firing = 0;           ///< states firing now (held ones not included)
};

class AlertEngine {
 public:
  /// Throws std::invalid_argument with the first validateRules() error (start-up/reload only;
  /// the config layer should have reported them with file and line already).
  explicit AlertEngine(std::vector<Rule> rules, EngineOptions options = {});
  ~AlertEngine();
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  /// A committed reading. Evaluates rules with on = "value"; marks the series alive for
  /// no_data_for rules (resolving them). Appends events to `out` in the order they happen.
  /// The engine keeps a pointer to `series`, not a copy: it must stay valid and unchanged for
  /// the engine's life (the pipeline passes the journal's series(id), which never move).
  void onReading(const InternedSeries& series, double value, Nanos event_time, Nanos now,
                 std::vector<AlertEvent>& out);
  /// A closed window [start, end) of `series` with its statistics. Evaluates rules whose `on`
  /// names one of them; marks the series alive like onReading (do not pass empty windows).
  /// `series` must stay valid as for onReading.
  void onWindow(const InternedSeries& series, Nanos window_start, Nanos window_end,
                std::span<const Statistic> stats, Nanos now, std::vector<AlertEvent>& out);
  /// Call periodically (e.g. every second): fires no_data_for rules, sends held re-triggers
  /// whose interval ended, forgets idle series. Handles at most `max_due` series whose
  /// deadline came (the earliest first) and returns true when more are due: call again (e.g.
  /// posted on the loop) so that 200,000 sensors going silent together are not one long stall.
  bool tick(Nanos now, std::vector<AlertEvent>& out, std::size_t max_due = SIZE_MAX);

  /// After a restart or reload: makes the rule × series of `firing` (the last event of its
  /// dedup key in the outbox, state firing) firing again, so its resolve will be sent and no
  /// second trigger. False when no rule of that name selects the series any more: the caller
  /// should then send resolvedFrom(firing, now) itself so the incident does not stay open.
  bool restore(const AlertEvent& firing, Nanos now);
  /// The same, keeping a pointer to `series` (equal to firing.series) instead of a copy of
  /// firing.series for the engine's life: it must stay valid as for onReading() (the pipeline
  /// passes the journal's series(id); 100,000 alerts restored at start are no 100,000 copies).
  bool restore(const AlertEvent& firing, const InternedSeries& series, Nanos now);
  /// The trigger event of every rule × series firing now (for `gatewayctl alerts` and to
  /// carry state into a reloaded engine with restore()).
  /// At most `max` of them (in no particular order).
  std::vector<AlertEvent> firing(std::size_t max = SIZE_MAX) const;
  /// The same events, one at a time: writing 100,000 firing alerts
  /// out costs one event, not a vector of 100,000 (~35 MB at the peak of a silence burst).
  /// `visit` must not call into the engine.
  void forEachFiring(const std::function<void(const AlertEvent&)>& visit) const;

  /// How many rule × series fire now (firing().size() without building the events).
  std::size_t firingCount() const;

  /// Bytes held by the entries, the index and the deadlines (not malloc overhead, nor the
  /// states of series that more than one rule selects); O(1).
  std::size_t memoryBytes() const;

  /// Counters, kept as states change: O(1).
  EngineCounters counters() const;
  const std::vector<Rule>& rules() const;

 private:
  bool restoreAt(const AlertEvent& firing, const InternedSeries* series, Nanos now);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The resolve event that closes `firing` (same dedup key), at `time`.
AlertEvent resolvedFrom(const AlertEvent& firing, Nanos time);

}  // namespace gw::alerts
