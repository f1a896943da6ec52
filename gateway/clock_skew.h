// Clock-skew correction (design: "Clock skew"): per device, the offset θ = reference −
// device_time is estimated with a filter robust to network delay (delay only ever adds, so a
// low envelope, as NTP's clock filter does), drift is tracked, steps are detected and
// re-converged within a few messages, and offsets beyond max_skew are flagged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/time.h"

namespace gw::clock {

struct ClockOptions {
  Nanos max_skew = 24 * 3600 * kNanosPerSecond;  ///< |offset| above this is flagged
  Nanos step = 5 * kNanosPerSecond;              ///< a jump larger than this is a step
  /// When > 0: a device time within this of the corrected time is kept verbatim (a right clock
  /// is not shifted by the filter's residual), and while not converged, a reference later than
  /// the device time by less than `step` — what delay alone gives a right clock, e.g. a backlog
  /// redelivered after a restart — keeps the device time too.
  Nanos tolerance = 0;

  bool operator==(const ClockOptions&) const = default;
};

/// One device's clock as the gateway sees it (shown by `gatewayctl sensors`).
struct DeviceClock {
  Nanos offset = 0;                ///< current estimate of reference − device time (added)
  double drift_ppm = 0;            ///< device clock rate error (positive: device runs slow)
  std::uint64_t samples = 0;       ///< observations with a device time
  std::uint64_t steps = 0;         ///< steps detected (jumps larger than ClockOptions::step)
  std::optional<Nanos> last_step;  ///< reference time of the last step
  bool out_of_bounds = false;      ///< |offset| > max_skew
  bool converged = false;          ///< enough samples since the last step to trust the estimate
  TimeReference reference = TimeReference::kReceive;  ///< reference of the last observation
  /// drift_ppm is significant against the delay noise and is applied between samples; when
  /// false the reported drift is a measurement only and the offset is treated as constant.
  bool drift_applied = false;
  Nanos last_seen = 0;  ///< reference time of the last observation
  /// Smaller level changes (above the delay noise, at most ClockOptions::step) that were
  /// confirmed and re-converged like a step; not counted in `steps`.
  std::uint64_t shifts = 0;
  /// Typical delay above the low envelope (mean), the noise the step detector allows for.
  Nanos jitter = 0;
  /// Observations answered with the reference time because a step was being confirmed.
  std::uint64_t suspect = 0;
};

struct Correction {
  Nanos event_time = 0;
  Nanos offset = 0;  ///< applied: event_time − device_time (0 when there is no device time)
};

/// The estimator for one clock. Not thread-safe; owned by the pipeline's event loop. One is
/// kept per device (issue 13: per-series memory), so its state is compact: state() is built
/// from it on request, the history is inline (kSegments points of 8 bytes: a segment minimum
/// relative to its epoch's origin), a suspected step's state is allocated at the first suspect
/// and kept, and no allocation happens once it exists; observe() costs tens of ns.
///
/// The gateway's own clock against the broker's is one more estimator fed with
/// observe(broker_stamp, receive_time): its offset is gateway clock − broker clock (plus the
/// minimum broker→gateway delay), since that delay only adds to the receive time.
///
/// Filter: samples are grouped in segments; each segment keeps its lowest sample (projected
/// with the current drift) and the last kSegments segment minima form the history. A new epoch
/// starts with one sample per segment and doubles the segment size each time the history is
/// full (merging neighbours), up to kSegmentSamples, so the history covers every sample of the
/// epoch until it spans kSegments * kSegmentSamples. The drift is the slope of the lower convex
/// hull of that history (the edge over its middle: the line under every point that is highest on
/// average); it is applied only when it is significant against the hull's residual noise. The
/// offset is the low envelope of the history extrapolated with the applied drift. Bounded size
/// (sizeof plus at most one Candidate).
/// The one shared copy of `options` (equal options, one copy for the process's life).
const ClockOptions* internOptions(const ClockOptions& options);
/// The position of an interned set of options (internOptions' result) in the interned list, and
/// back: 2 bytes per device instead of a pointer where space is tight (the clock table). A
/// process has one set per distinct [clock] section it ran with (reloads); past 65,535 of them
/// the index would saturate, so internedIndex() throws std::length_error instead.
std::uint16_t internedIndex(const ClockOptions* interned);
const ClockOptions* internedOptions(std::uint16_t index);

class SkewEstimator {
 public:
  explicit SkewEstimator(const ClockOptions& options);
  /// With options already interned (internOptions' result): no look-up.
  static SkewEstimator withInterned(const ClockOptions* interned) { return {interned, 0}; }
  /// Back to a new estimator with `interned` options, keeping the storage already allocated
  /// (history, candidate): the same results as a new one, without an allocation when it is
  /// filled again (a scratch estimator replaying a few samples; see ClockTable).
  void reset(const ClockOptions* interned);
  /// Feeds one observation and returns the corrected event time for it. While the estimate is
  /// not yet trustworthy the reference time is used (Correction::offset = reference − device
  /// time): for the first observation, and for one whose offset jumps by more than
  /// options.step or falls below the estimate beyond the delay noise, until a second consistent
  /// one confirms the step (DeviceClock::suspect counts these). An offset above the estimate
  /// by at most options.step is taken for queueing delay and gets the current estimate; four
  /// consistent ones in a row are a clock set back and re-converge like a step (`shifts`).
  Correction observe(Nanos device_time, Nanos reference_time);
  /// Same, and records which reference the caller used (shown in state().reference).
  Correction observe(Nanos device_time, Nanos reference_time, TimeReference reference);
  /// A reading without a device time: its event time is the reference; the estimate is kept.
  Correction observeReferenceOnly(Nanos reference_time, TimeReference reference);
  /// The device's clock as of the last observation (built on request: not kept per device).
  DeviceClock state() const;
  /// Parts of state() that the clock table reads per observation, without building it.
  std::uint64_t samples() const { return samples_; }
  std::uint32_t steps() const { return candidate_.find() ? candidate_.find()->steps : 0; }
  bool outOfBounds() const { return offset_ > options_->max_skew || offset_ < -options_->max_skew; }
  /// Heap bytes held (a suspected step's state, once there was one), for memory figures.
  std::size_t heapBytes() const { return candidate_.heapBytes(); }

  // 16 minima of up to 16 samples: the same 256 samples as 32 of 8 with half the history per
  // device (issue 13/16: memory per device); the unit tests' accuracy bounds and clock_bench's
  // errors hold (mean error 0.072 / 0.022 / 0.029 ms with 32 × 8, 0.055 / 0.016 / 0.035 now).
  static constexpr int kSegmentSamples = 16;
  static constexpr int kSegments = 16;

 private:
  SkewEstimator(const ClockOptions* interned, int /*tag*/) : options_(interned) {}
  Correction estimate(Nanos device_time, Nanos reference_time);
  /// Applies ClockOptions::tolerance to an estimate.
  Correction trust(Nanos device_time, const Correction& corrected) const;
  struct Sample {
    Nanos device_time;
    Nanos offset;
  };
  /// A history entry: a sample relative to the epoch's origin (origin_, origin_offset_), which
  /// every use of the history needs anyway (keys, the drift fit), in single precision: 8 bytes
  /// instead of 16 (issue 13: the history is most of a device's state). The relative error
  /// (6e-8) is nanoseconds for the offsets of an epoch, far below the filter's tolerance
  /// (kMinTolerance, 25 ms), and the fit's slope is a ratio of such differences.
  struct Point {
    float dx;  ///< device_time − origin_ (ns)
    float dy;  ///< offset − origin_offset_ (ns)
  };
  Point toPoint(const Sample& s) const;
  double key(const Point& p) const { return p.dy - driftUsed() * p.dx; }
  /// The drift applied (drift_ when significant, else 0).
  double driftUsed() const { return drift_applied_ ? drift_ : 0.0; }
  /// The lowest key of the history and the open segment.
  double baseKey() const;
  enum class Kind : std::uint8_t { kNone, kJump, kHigh };

  void startEpoch(const Sample& seed, int samples);
  void addToHistory(const Sample& s);
  void closeSegment();
  void compact();
  void refit();
  /// Whether b is a continuation of a, within `tolerance` (ns) plus the rate tolerance.
  bool consistent(const Sample& a, const Sample& b, double tolerance) const;
  /// A sample's offset relative to the epoch's origin, projected to the origin with the drift.
  double key(const Sample& s) const;
  /// The estimated offset at device time `d`, relative to origin_offset_.
  double predict(Nanos d) const;
  /// Publishes the estimate at `device_time` (offset_, converged_) and returns the correction
  /// (`fallback` if the corrected time cannot be represented).
  Correction apply(Nanos device_time, const Correction& fallback);

  static constexpr Nanos kNoStep = INT64_MIN;

  /// Shared by every estimator built with equal options (internOptions): 8 bytes per device
  /// instead of a 24-byte copy (issue 13: per-series memory).
  const ClockOptions* options_;
  // What state() reports that cannot be derived from the filter (steps, shifts, suspect and the
  // last step are the candidate's: there are none without one).
  Nanos offset_ = 0;
  std::uint64_t samples_ = 0;
  Nanos last_seen_ = 0;
  std::uint32_t epoch_samples_ = 0;  ///< samples since the filter (re)started
  std::uint8_t ring_size_ = 0;
  std::uint8_t ring_head_ = 0;
  std::uint8_t segment_count_ = 0;   ///< samples in the open segment
  std::uint8_t segment_size_ = 1;    ///< samples per segment (1, 2, 4 .. kSegmentSamples)
  std::uint8_t fits_skipped_ = 0;    ///< segments closed since the last drift fit
  std::uint8_t history_argmin_ = 0;  ///< ring slot of the lowest key
  Kind candidate_kind_ = Kind::kNone;
  std::uint8_t candidate_count_ = 0;
  bool converged_ = false;
  bool drift_applied_ = false;  ///< drift_ is significant and applied (driftUsed())
  TimeReference reference_ = TimeReference::kReceive;
  Nanos origin_ = 0;         ///< device time the epoch's projections are relative to
  Nanos origin_offset_ = 0;  ///< offset the epoch's keys are relative to
  /// Lowest sample (by key) of the open segment. Its key, and the lowest key of the history
  /// and the open segment (baseKey()), are recomputed from it when needed instead of being
  /// kept: the same arithmetic on the same values, 16 bytes less per device (issue 13).
  Sample segment_min_{};
  double history_key_ = 0;  ///< lowest key of the closed segments
  double drift_ = 0;        ///< fitted slope dθ/d(device time)
  double jitter_ = 0;       ///< EMA of the residual above the envelope (ns)
  Nanos last_device_time_ = 0;
  /// A suspected step (kept apart: most devices never have one, so it costs them 8 bytes
  /// instead of 56; allocated at a device's first suspect and kept, so a noisy device does not
  /// allocate per message). The counters of steps, shifts and suspects and the last step's time
  /// are here too (issue 13: 24 bytes less per device, 248 with the history, a 256-byte malloc
  /// chunk instead of 288): each of them only changes after a suspect, which allocated it. 56
  /// bytes, a 64-byte malloc chunk as when it held the suspected step alone (most devices of a
  /// flood have one: queueing delay is suspected first).
  struct Candidate {
    Sample last{};              ///< last sample of a suspected step
    Sample best{};              ///< lowest sample (by projected offset) of a suspected step
    Nanos reference = 0;        ///< reference time of the first sample of a suspected step
    Nanos last_step = kNoStep;  ///< reference time of the last step
    std::uint32_t suspect = 0;  ///< saturates at 2^32 - 1
    std::uint16_t steps = 0;    ///< saturates at 65,535 (a clock that steps that often is broken)
    std::uint16_t shifts : 15 = 0;  ///< saturates at 32,767
    /// The first sample of the suspected step was off by more than options.step (a step when
    /// confirmed, else a shift).
    std::uint16_t big_jump : 1 = 0;
  };
  /// Owns a Candidate, copied with the estimator.
  class CandidateBox {
   public:
    CandidateBox() = default;
    CandidateBox(const CandidateBox& other)
        : p_(other.p_ ? std::make_unique<Candidate>(*other.p_) : nullptr) {}
    CandidateBox& operator=(const CandidateBox& other) {
      if (this != &other) p_ = other.p_ ? std::make_unique<Candidate>(*other.p_) : nullptr;
      return *this;
    }
    CandidateBox(CandidateBox&&) noexcept = default;
    CandidateBox& operator=(CandidateBox&&) noexcept = default;
    /// The candidate, or nullptr before the first suspect.
    const Candidate* find() const { return p_.get(); }
    /// The candidate, created on first use.
    Candidate& get() {
      if (!p_) p_ = std::make_unique<Candidate>();
      return *p_;
    }
    std::size_t heapBytes() const { return p_ ? sizeof(Candidate) : 0; }

   private:
    std::unique_ptr<Candidate> p_;
  };
  CandidateBox candidate_;  ///< valid while candidate_kind_ != kNone
  /// Segment minima, oldest at ring_head_ (ring_size_ of them). Inline (issue 13: a device's
  /// estimator and its history are one allocation of the clock table, not two, and no pointer
  /// to the history): 128 bytes.
  Point ring_[kSegments] = {};
};

using gw::parseBrokerStamp;  // core/time.h

}  // namespace gw::clock
