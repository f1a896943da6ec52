// Which piece of work held the event loop (issue 13: the loop's longest stall, aim ≤ 10 ms).
// The stall itself is a 10 ms timer's lateness (Pipeline::Impl::watchLoop); this names the
// handler behind it: a few handlers of the pipeline (commit, retention, window slices, …) read
// the monotonic clock before and after they run, once per handler; a source's messages are timed
// as one turn (openTurn/markTurn/closeTurn: the CPU clock read once per turn, never per
// message). The
// longest run of each kind is kept for the current and the previous 10 s bucket and since start.
// The loop thread's CPU time is read beside it, so that a run that was long because the thread
// waited for a CPU can be told from one that worked that long. That clock is a system call
// (issue 16), so it is not read before every run: the last reading (the loop watch's, every
// other 10 ms tick) is the run's start, and the clock is read after the run only when it took a
// millisecond or more. A run's CPU time is then the CPU since that reading, capped at the run's
// wall time: it may include the CPU the loop used between the reading and the run's start
// (kCpuAnchorAge bounds that span: an older reading is renewed before the run), so a figure
// well under the wall time still says the thread waited for a CPU or the disk.
// Loop thread only.
#pragma once

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "core/time.h"

namespace gw {

/// The named handlers on the loop; their names are the `work` label of the metrics.
enum class LoopWorkKind : std::uint8_t {
  kCommit,          ///< a group commit (with the retention deletes and checkpoint it carries)
  kRetention,       ///< the retention pass once a second (caps, max_age, confirmed segments)
  kWindowClose,     ///< a slice of closing windows
  kWindowDeadline,  ///< the wall-time deadline of silent series' windows
  kAlertTick,       ///< the alert engine's timers (no_data_for, re-triggers), a slice
  kDurable,         ///< acknowledgements and sink pokes after a sync or commit
  kStats,           ///< the periodic stats line
  kIngest,          ///< a source's turn: its messages decoded, appended, windows and alerts fed
  kSinks,           ///< a sink's delivery report and the next batch read from the journal
  kCount
};

constexpr std::array<std::string_view, static_cast<std::size_t>(LoopWorkKind::kCount)>
    kLoopWorkNames{"commit",          "retention",    "window_close",
                   "window_deadline", "alert_timers", "durable",
                   "stats",           "ingest",       "sinks"};

constexpr std::string_view loopWorkName(LoopWorkKind k) {
  return kLoopWorkNames[static_cast<std::size_t>(k)];
}

/// One measured run: the longest of some span. `took` = 0: nothing measured.
struct LoopWork {
  std::string_view name;  ///< a kLoopWorkNames entry; empty when nothing was measured
  Nanos took = 0;
  Nanos cpu = -1;      ///< of it, on the loop thread's CPU clock (-1: not measured)
  std::string detail;  ///< what it did, e.g. "2 segments, 131072 rows" (may be empty)
};

/// Longest runs per kind. All times from the injected monotonic clock.
class LoopWorkMeter {
 public:
  static constexpr std::size_t kKinds = static_cast<std::size_t>(LoopWorkKind::kCount);

  /// `cpu`: the loop thread's CPU time (empty: threadCpuNow()).
  explicit LoopWorkMeter(std::function<Nanos()> mono, std::function<Nanos()> cpu = {})
      : mono_(std::move(mono)),
        cpu_(cpu ? std::move(cpu) : std::function<Nanos()>(&threadCpuNow)) {}

  static Nanos threadCpuNow() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<Nanos>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
  }

  Nanos now() const { return mono_(); }
  /// The loop thread's CPU time now (a system call); later runs measure their CPU from it.
  Nanos cpuNow() { return readCpu(mono_()); }

  /// Runs `fn` and records how long it took under `kind`. `detail` is called only when this run
  /// is the longest since the last stall check or since start (it may format).
  /// The CPU clock is read after the run only when it took kCpuAfter or longer (a system call
  /// per read, issue 16): a shorter run's CPU time is not measured (-1). Before the run it is
  /// read only when the last reading is older than kCpuAnchorAge (the loop watch reads it every
  /// 20 ms): a long run's CPU time is the CPU since that reading, at most its wall time.
  static constexpr Nanos kCpuAfter = kNanosPerMilli;
  static constexpr Nanos kCpuAnchorAge = 30 * kNanosPerMilli;
  template <class Fn, class Detail>
  void run(LoopWorkKind kind, Fn&& fn, Detail&& detail) {
    closeTurn();  // whatever ran before this handler is not part of it
    const Nanos start = mono_();
    if (cpu_at_ < 0 || start - cpu_at_ > kCpuAnchorAge) readCpu(start);
    const Nanos cpu_start = cpu_last_;
    std::forward<Fn>(fn)();
    const Nanos end = mono_(), took = end - start;
    record(kind, took, std::forward<Detail>(detail),
           took >= kCpuAfter ? std::min(took, readCpu(end) - cpu_start) : -1);
  }
  template <class Fn>
  void run(LoopWorkKind kind, Fn&& fn) {
    run(kind, std::forward<Fn>(fn), [] { return std::string(); });
  }

  // --- a turn: work that comes as many calls inside one handler (a source's messages) ---------
  // The first call of a turn opens it, each call ends with markTurn() (the monotonic clock
  // only: a vDSO read, no system call), and closeTurn() records it: when the source's handler
  // ends (Ingest::turnDone()), and before any other kind runs or is recorded, so a turn never
  // spans other named work. Its CPU time (the thread's CPU from the opening to the close, at
  // most its wall time) is measured when the turn before it took kCpuAfter or longer; else -1.

  /// Opens a turn of `kind` unless one is open; true when this call opened it. `detail` is
  /// called when the turn is recorded as the longest (it may read the caller's counters).
  bool openTurn(LoopWorkKind kind, std::function<std::string()> detail) {
    if (turn_open_) return false;
    turn_open_ = true;
    turn_kind_ = kind;
    turn_start_ = turn_last_ = mono_();
    // The CPU clock is a system call: read for a turn only when the turn before it took
    // kCpuAfter or longer (a flood's turns come in runs; a steady stream's are short, issue 16).
    turn_cpu_start_ = turn_cpu_next_ ? readCpu(turn_start_) : -1;
    turn_detail_ = std::move(detail);
    return true;
  }
  /// One call of the open turn ended.
  void markTurn() { turn_last_ = mono_(); }
  bool turnOpen() const { return turn_open_; }
  /// Records the open turn (nothing when none is open).
  void closeTurn() {
    if (!turn_open_) return;
    turn_open_ = false;
    const Nanos took = turn_last_ - turn_start_;
    const Nanos cpu =
        turn_cpu_start_ >= 0 ? std::min(took, readCpu(turn_last_) - turn_cpu_start_) : -1;
    turn_cpu_next_ = took >= kCpuAfter;
    auto detail = std::exchange(turn_detail_, {});
    record(
        turn_kind_, took, [&] { return detail ? detail() : std::string(); }, cpu);
  }

  template <class Detail>
  void record(LoopWorkKind kind, Nanos took, Detail&& detail, Nanos cpu = -1) {
    if (turn_open_ && kind != turn_kind_) closeTurn();
    const auto i = static_cast<std::size_t>(kind);
    bucket_[i] = std::max(bucket_[i], took);
    if (took > max_[i]) max_[i] = took;
    const bool longest_since_check = took > since_check_.took;
    const bool longest_ever = took > longest_.took;
    if (!longest_since_check && !longest_ever) return;
    std::string d = detail();
    if (longest_ever) longest_ = {loopWorkName(kind), took, cpu, d};
    if (longest_since_check) since_check_ = {loopWorkName(kind), took, cpu, std::move(d)};
  }

  /// The 10 s bucket ends (called by the loop watch with its own bucket).
  void rotate() {
    previous_ = bucket_;
    bucket_.fill(0);
  }

  /// The longest run since the previous call (the loop watch's check), and a new span.
  LoopWork takeSinceCheck() {
    closeTurn();
    return std::exchange(since_check_, LoopWork{});
  }

  /// Longest run of `kind` over the current and the previous bucket (10–20 s), and since start.
  Nanos recent(LoopWorkKind kind) const {
    const auto i = static_cast<std::size_t>(kind);
    return std::max(bucket_[i], previous_[i]);
  }
  Nanos max(LoopWorkKind kind) const { return max_[static_cast<std::size_t>(kind)]; }

  /// The longest named run over the last 10–20 s (no detail) and since start (with detail).
  LoopWork longestRecent() const {
    LoopWork w;
    for (std::size_t i = 0; i < kKinds; ++i) {
      const Nanos t = std::max(bucket_[i], previous_[i]);
      if (t > w.took) w = {kLoopWorkNames[i], t, -1, {}};
    }
    return w;
  }
  const LoopWork& longest() const { return longest_; }

 private:
  /// Reads the CPU clock (at `mono` on the monotonic clock) and keeps it as the last reading.
  Nanos readCpu(Nanos mono) {
    cpu_last_ = cpu_();
    cpu_at_ = mono;
    return cpu_last_;
  }

  std::function<Nanos()> mono_, cpu_;
  Nanos cpu_last_ = 0, cpu_at_ = -1;  ///< the last CPU clock reading, and when (-1: none)
  std::array<Nanos, kKinds> bucket_{}, previous_{}, max_{};
  LoopWork longest_, since_check_;
  bool turn_open_ = false;
  LoopWorkKind turn_kind_ = LoopWorkKind::kIngest;
  Nanos turn_start_ = 0, turn_last_ = 0, turn_cpu_start_ = -1;
  bool turn_cpu_next_ = false;  ///< the last turn was long: read the CPU clock for the next
  std::function<std::string()> turn_detail_;
};

}  // namespace gw
