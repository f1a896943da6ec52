// Tumbling windows per series by event time (design: "Windows"): the extension point the
// pipeline feeds committed readings to and takes closed-window aggregates from.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/time.h"
#include "core/window_stats.h"

namespace gw::aggregators {

// Stat, StatSet, kDefaultStats, kAllStats, toString(Stat) and parseStat() live in
// core/window_stats.h (the journal and the sinks use them too).
using gw::kAllStats;
using gw::kDefaultStats;
using gw::parseStat;
using gw::QuantileMode;
using gw::Stat;
using gw::StatSet;
using gw::WindowStats;

/// [aggregate] config: what the windows compute. Immutable once the aggregator is built.
struct WindowOptions {
  /// aggregate.window: one set of tumbling windows per size, aligned to the Unix epoch
  /// (window k covers [k·size, (k+1)·size)). Each > 0, no duplicates.
  std::vector<Nanos> sizes = {10 * kNanosPerSecond};
  /// aggregate.allowed_lateness: the watermark trails the highest event time by this (≥ 0).
  Nanos allowed_lateness = 2 * kNanosPerSecond;
  /// aggregate.stats: kDefaultStats plus any of sum, p50, p99, stddev, first, last.
  StatSet stats = kDefaultStats;
  /// Quantiles are exact while a window holds at most this many readings (≥ 1): 8 bytes each.
  std::uint32_t sample_cap = 1024;
  /// Past the cap: the quantile sketch's relative accuracy α, in [1e-4, 0.5].
  double sketch_alpha = 0.01;
  /// Past the cap: buckets per sign in the sketch (≥ 16): 8 bytes each, at most.
  std::uint32_t sketch_max_buckets = 1024;
};

/// Why the options cannot be used; nullopt when they can.
std::optional<std::string> validate(const WindowOptions& options);

/// One closed window of one series. Quantiles use nearest rank: the q-quantile of n values is
/// the ⌈q·n⌉-th smallest (computed in integers: ⌈q%·n/100⌉), reported as a sample (exact) or
/// within the sketch's bound and clamped to [min, max]. Fields not in `stats` are NaN (doubles)
/// or 0 (times).
struct Aggregate : WindowStats {
  SeriesId series = 0;
  Nanos first_time = 0, last_time = 0;  ///< event times of `first` and `last`
};

/// Counters since construction, for metrics and `gatewayctl`.
struct AggregatorStats {
  std::uint64_t readings = 0;        ///< add() and replay() calls accepted into a window
  std::uint64_t late = 0;            ///< readings for a closed window (add()), once per size
  std::uint64_t replay_skipped = 0;  ///< replay() readings for a closed window, once per size
  std::uint64_t rejected = 0;        ///< non-finite values, event times at the int64 edge
  std::uint64_t windows_closed = 0;  ///< aggregates emitted
  std::uint64_t sketch_windows = 0;  ///< of those, past the sample cap
  std::uint64_t open_windows = 0;    ///< windows (series × size) open now
  std::uint64_t series = 0;          ///< series ids seen (slots allocated)
  Nanos watermark = 0;               ///< current watermark (INT64_MIN before any input)
};

/// Receives each closed window, synchronously, from inside add(), replay() or
/// advanceWallTime(). It must not call back into the aggregator.
using EmitFn = std::function<void(const Aggregate&)>;

/// Tumbling windows per (series, size), by event time.
///
/// Watermark: the highest event time seen by add()/replay() (all series together) minus
/// allowed_lateness, raised further by advanceWallTime(now) to now − allowed_lateness so that
/// the windows of silent series close too. It never goes back. A window [start, end) closes
/// as soon as watermark ≥ end; so a reading joins its window while its event time t satisfies
/// end(t) > watermark, i.e. it trails the highest event time seen by less than about the
/// lateness.
///
/// Late readings: a reading whose window is closed (end ≤ watermark, or restored as closed)
/// never reopens it: it is counted in stats().late and in `late` of the NEXT aggregate emitted
/// for that series and size (its own aggregate is already out). Late readings pending at a
/// restart are not persisted and so not reported.
///
/// Order: every aggregate that a watermark step closes is emitted ordered by (window_end,
/// series, window_size); the window ends of successive steps only grow, so the whole output is
/// in that order.
///
/// Restart contract (the pipeline persists state in the journal, this class holds none):
///  1. With the aggregates it journals, the pipeline persists, in the same transaction, the
///     watermark() and the replayFrom() seq taken after the last add() of the batch.
///  2. On start, before any add(): restoreWatermark(persisted watermark) — or, per series,
///     restoreClosed(series, size, last journalled window_end) — then replay() every journal
///     reading with seq ≥ the persisted replayFrom(), in seq order, then advanceWallTime(now)
///     and add() as usual. Replayed readings of windows already closed are skipped (not late);
///     the others rebuild the open windows, which then close once, complete. Readings must come
///     in non-decreasing seq order for replayFrom() to be right.
///  The journal must keep rows from replayFrom() on (a cursor for the windows).
///
/// Memory: a slot of 8 bytes per (series id, size) (and 8 more for the series restored by
/// restoreClosed() after a restart, up to the highest such id) and 4 bytes per ring position
/// (⌈lateness/size⌉ + 1 of them); a window state of 136 bytes (x86-64) exists only while the
/// window is open (pooled: a closed window's state serves the next window opened, of any
/// series), plus from its third reading up to 8·sample_cap bytes of samples and, past the cap,
/// a sketch of at most 2·8·sketch_max_buckets bytes. Buffers are kept with the pooled state (no
/// allocation per reading in a steady state) and released when a window used under a quarter
/// of them. So an idle series costs 16 bytes per size, one with an open window ~100-155.
/// Series ids are indices: they should be dense (Journal::internSeries gives 0, 1, 2, ...).
///
/// Threading: single-threaded; the pipeline's event loop owns it.
class Aggregator {
 public:
  /// Builds an aggregator; throws std::invalid_argument when validate(options) fails (a
  /// start-up error). `emit` receives the closed windows.
  static std::unique_ptr<Aggregator> create(const WindowOptions& options, EmitFn emit);
  virtual ~Aggregator() = default;

  /// Adds a committed reading to its window of every size, or counts it late. `seq` is the
  /// reading's journal seq (0 when there is none; replayFrom() is then meaningless). A
  /// non-finite value is counted in stats().rejected and otherwise ignored. May emit
  /// aggregates: those this reading's event time closes, before the reading is added.
  virtual void add(SeriesId series, Nanos event_time, double value, std::uint64_t seq = 0) = 0;
  /// The same as add() for a reading replayed from the journal after a restart: when its
  /// window is already closed it is skipped (stats().replay_skipped), not counted late.
  virtual void replay(SeriesId series, Nanos event_time, double value, std::uint64_t seq) = 0;
  /// Wall clock (same clock as event times, e.g. gw::wallNow() on a timer): raises the
  /// watermark to now − allowed_lateness, emitting the windows that closes. Call it after the
  /// replay on start, then periodically; the period bounds the close latency of silent series.
  virtual void advanceWallTime(Nanos now) = 0;

  /// Marks the windows of (series, size) ending at or before `end` as closed (already emitted
  /// before a restart). Call before any reading of that series; `size` must be configured
  /// (aborts otherwise: a bug).
  virtual void restoreClosed(SeriesId series, Nanos size, Nanos end) = 0;
  /// Raises the watermark to `watermark` (persisted before a restart) without emitting:
  /// windows ending at or before it count as closed. Call before any reading.
  virtual void restoreWatermark(Nanos watermark) = 0;

  /// The wall time at which advanceWallTime() will close the oldest open window (its end +
  /// allowed_lateness), or nullopt with none open: arm the loop's timer for it instead of
  /// polling, so that a silent series' window closes on time.
  virtual std::optional<Nanos> nextWallDeadline() const = 0;
  /// Current watermark (INT64_MIN before any input). While windows wait for closeSome(), just
  /// below the end of the first of them: what a restart must restore, so that they are rebuilt
  /// from the journal rather than lost.
  virtual Nanos watermark() const = 0;
  /// The smallest seq a replay must start from to rebuild every open window: the seq of the
  /// first reading of the oldest open window, or, with none open, the last seq seen + 1 (1
  /// before any reading).
  virtual std::uint64_t replayFrom() const = 0;

  /// Slicing (issue 13: 100,000 windows ending together must not hold the event loop): a
  /// watermark step closes at most `max` windows at once (0, the default: all); the others
  /// wait, in order, for closeSome(). A reading for a waiting window is late (the watermark
  /// closed it). A reading whose window needs the ring position of a waiting one first closes
  /// every waiting window (so nothing is lost or reordered, only less sliced).
  virtual void setCloseBudget(std::size_t max) = 0;
  /// Closes up to `max` waiting windows, in order; returns how many still wait.
  virtual std::size_t closeSome(std::size_t max) = 0;
  /// Windows whose end the watermark passed that wait for closeSome().
  virtual std::size_t closing() const = 0;
  /// While a window end is half emitted (some of its windows out, others waiting): the last
  /// window emitted. Persist it with watermark() and replayFrom(); after a restart,
  /// restorePartial() (after restoreWatermark(), before any reading) marks the windows of that
  /// end up to it, in emission order (series, then size), as closed, so none is emitted twice.
  struct WindowKey {
    Nanos end = 0;
    SeriesId series = 0;
    Nanos size = 0;
  };
  virtual std::optional<WindowKey> closedThrough() const = 0;
  virtual void restorePartial(const WindowKey& key) = 0;

  virtual AggregatorStats stats() const = 0;
  /// Bytes held by the window state: the object, its slot arrays and every buffer's capacity
  /// (not malloc overhead). O(1): the windows' buffers are counted as they grow and shrink, so
  /// a status request does not walk every window (issue 13).
  virtual std::size_t memoryBytes() const = 0;
  /// Tests: memoryBytes() with the windows' buffers walked one by one instead of counted.
  virtual std::size_t walkedMemoryBytes() const = 0;
  /// Windows open now.
  virtual std::size_t openWindows() const = 0;
};

}  // namespace gw::aggregators
