#include "gateway/clock_skew.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <mutex>
#include <stdexcept>

namespace gw::clock {
namespace {

// Samples at the start of an epoch before small level changes are looked for: until then the
// envelope itself may still be high by a good part of the delay spread, and only jumps beyond
// options.step are.
constexpr std::uint32_t kWarmup = 16;
// Floor of the residual tolerated before a sample is suspected (ns).
constexpr double kMinTolerance = 25.0 * kNanosPerMilli;
// Clock rates wander (temperature, a wrong drift estimate): the tolerance grows with the
// device time since the last sample by this rate.
constexpr double kRateTolerance = 50e-6;
// Above-envelope residuals are suspected beyond this many jitters (the jitter is a mean).
constexpr double kHighJitters = 4.0;
// Consistent samples that confirm a step or a level change; one alone is an outlier. A rise
// above the envelope by at most options.step is most likely queueing delay, which comes in
// bursts (and a burst of similar delays looks exactly like the clock set back): it needs more.
constexpr int kConfirm = 2;
constexpr int kHighConfirm = 4;
// The fitted drift is applied when it moves the envelope over the history by more than
// kSignificance(n) mean hull residuals (n points); otherwise it is noise and would bias the
// envelope. Without drift that ratio exceeds 64 / n in about one fit in a thousand (simulated
// with uniform and exponential delays, n = 6 .. 32).
constexpr double kSignificanceTimesPoints = 64.0;
constexpr double kMinSignificance = 2.0;
// Segment minima needed before the drift is fitted (until then a step keeps the old drift).
constexpr int kMinFitPoints = 6;
constexpr double kMaxDrift = 0.05;  // 50,000 ppm: beyond any oscillator, a broken fit
// The jitter is a running mean over the first samples, then an exponential average.
constexpr std::uint64_t kJitterSamples = 16;

// Once the history is full and its segments have their final size, the drift is refitted
// every this many segments (every 64 samples): it changes slowly, and the fit is the one
// O(history) step.
constexpr int kRefitEvery = 8;

void saturatingIncrement(std::uint32_t& n) {
  if (n != UINT32_MAX) ++n;
}

Nanos roundToNanos(double v) { return static_cast<Nanos>(v < 0 ? v - 0.5 : v + 0.5); }

/// a − b as a double, exact when the int64 difference does not overflow.
double rel(Nanos a, Nanos b) {
  Nanos r;
  if (!__builtin_sub_overflow(a, b, &r)) return static_cast<double>(r);
  return static_cast<double>(a) - static_cast<double>(b);
}

}  // namespace

namespace {
std::mutex& internMutex() {
  static std::mutex mutex;
  return mutex;
}
std::deque<ClockOptions>& internedList() {
  static std::deque<ClockOptions> interned;
  return interned;
}
}  // namespace

const ClockOptions* internOptions(const ClockOptions& options) {
  // A config has one set of clock options; a reload may add another. Never freed: estimators
  // of a previous config may still point at theirs (a few bytes per distinct set).
  const std::lock_guard<std::mutex> lock(internMutex());
  auto& interned = internedList();
  for (const ClockOptions& o : interned)
    if (o == options) return &o;
  return &interned.emplace_back(options);
}

std::uint16_t internedIndex(const ClockOptions* interned) {
  const std::lock_guard<std::mutex> lock(internMutex());
  const auto& list = internedList();
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (&list[i] != interned) continue;
    if (i > UINT16_MAX) throw std::length_error("more than 65,536 distinct sets of clock options");
    return static_cast<std::uint16_t>(i);
  }
  return 0;
}

const ClockOptions* internedOptions(std::uint16_t index) {
  const std::lock_guard<std::mutex> lock(internMutex());
  return &internedList().at(index);
}

SkewEstimator::SkewEstimator(const ClockOptions& options) : options_(internOptions(options)) {}

void SkewEstimator::reset(const ClockOptions* interned) {
  CandidateBox candidate = std::move(candidate_);
  *this = withInterned(interned);
  candidate_ = std::move(candidate);
  if (candidate_.find() != nullptr) candidate_.get() = Candidate{};  // its counters too
}

DeviceClock SkewEstimator::state() const {
  DeviceClock c;
  c.offset = offset_;
  c.drift_ppm = drift_ * 1e6;
  c.samples = samples_;
  const Candidate* candidate = candidate_.find();
  if (candidate != nullptr) {
    c.steps = candidate->steps;
    if (candidate->last_step != kNoStep) c.last_step = candidate->last_step;
    c.shifts = candidate->shifts;
    c.suspect = candidate->suspect;
  }
  c.out_of_bounds = offset_ > options_->max_skew || offset_ < -options_->max_skew;
  c.converged = converged_;
  c.reference = reference_;
  c.drift_applied = driftUsed() != 0.0;
  c.last_seen = last_seen_;
  c.jitter = roundToNanos(jitter_);
  return c;
}

double SkewEstimator::key(const Sample& s) const {
  return rel(s.offset, origin_offset_) - driftUsed() * rel(s.device_time, origin_);
}

double SkewEstimator::baseKey() const {
  // What a kept base key was: the history's lowest key after a segment closes, and the lower
  // of it and the open segment's while one is open (startEpoch: 0, the seed's own key).
  return segment_count_ == 0 ? history_key_ : std::min(history_key_, key(segment_min_));
}

SkewEstimator::Point SkewEstimator::toPoint(const Sample& s) const {
  return {static_cast<float>(rel(s.device_time, origin_)),
          static_cast<float>(rel(s.offset, origin_offset_))};
}

double SkewEstimator::predict(Nanos d) const { return baseKey() + driftUsed() * rel(d, origin_); }

bool SkewEstimator::consistent(const Sample& a, const Sample& b, double tolerance) const {
  const double dd = rel(a.device_time, b.device_time);
  const double diff = rel(a.offset, b.offset) - driftUsed() * dd;
  return std::abs(diff) <= tolerance + kRateTolerance * std::abs(dd);
}

void SkewEstimator::startEpoch(const Sample& seed, int samples) {
  origin_ = seed.device_time;
  origin_offset_ = seed.offset;
  ring_size_ = 0;
  ring_head_ = 0;
  segment_size_ = 1;
  fits_skipped_ = 0;
  segment_min_ = seed;
  segment_count_ = static_cast<std::uint8_t>(samples);
  history_key_ = std::numeric_limits<double>::infinity();
  epoch_samples_ = static_cast<std::uint32_t>(samples);
  candidate_kind_ = Kind::kNone;
  candidate_count_ = 0;
  last_device_time_ = seed.device_time;
  // The drift (drift_, drift_applied_) is kept: a step moves the clock, not its rate. The next fit
  // over the new epoch replaces it.
}

void SkewEstimator::addToHistory(const Sample& s) {
  if (segment_count_ == 0 || key(s) < key(segment_min_)) segment_min_ = s;
  ++segment_count_;
  ++epoch_samples_;
  last_device_time_ = s.device_time;
  if (segment_count_ >= segment_size_) closeSegment();
}

// Merges neighbouring segments (keeping the lower sample) and doubles the segment size.
void SkewEstimator::compact() {
  std::array<Point, kSegments> merged;
  int m = 0;
  for (int i = 0; i + 1 < ring_size_; i += 2) {
    const Point& a = ring_[(ring_head_ + i) % kSegments];
    const Point& b = ring_[(ring_head_ + i + 1) % kSegments];
    merged[m++] = key(b) < key(a) ? b : a;
  }
  if (ring_size_ % 2) merged[m++] = ring_[(ring_head_ + ring_size_ - 1) % kSegments];
  for (int i = 0; i < m; ++i) ring_[i] = merged[i];
  ring_head_ = 0;
  ring_size_ = static_cast<std::uint8_t>(m);
  segment_size_ = static_cast<std::uint8_t>(segment_size_ * 2);
}

void SkewEstimator::closeSegment() {
  bool rescan = false;
  if (ring_size_ == kSegments && segment_size_ < kSegmentSamples) {
    compact();
    rescan = true;
  }
  int slot;
  if (ring_size_ < kSegments) {
    slot = (ring_head_ + ring_size_) % kSegments;
    ++ring_size_;
  } else {
    slot = ring_head_;
    ring_head_ = static_cast<std::uint8_t>((ring_head_ + 1) % kSegments);
    rescan = slot == history_argmin_;  // the lowest segment leaves the history
  }
  ring_[slot] = toPoint(segment_min_);
  const double segment_min_key = key(segment_min_);
  segment_count_ = 0;
  if (ring_size_ < kSegments || segment_size_ < kSegmentSamples || ++fits_skipped_ >= kRefitEvery) {
    fits_skipped_ = 0;
    const double before = driftUsed();
    refit();
    rescan = rescan || driftUsed() != before;
  }
  if (rescan || ring_size_ == 1) {
    history_key_ = std::numeric_limits<double>::infinity();
    for (int i = 0; i < ring_size_; ++i) {
      const double k = key(ring_[i]);
      if (k < history_key_) {
        history_key_ = k;
        history_argmin_ = static_cast<std::uint8_t>(i);
      }
    }
  } else if (segment_min_key < history_key_) {
    history_key_ = segment_min_key;
    history_argmin_ = static_cast<std::uint8_t>(slot);
  }
}

// Lower convex hull of the segment minima (monotone chain); the drift is the slope of the hull
// edge over the mean device time: of all lines under every point it is the one with the
// smallest total residual (the L1 lower envelope fit).
void SkewEstimator::refit() {
  const int n = ring_size_;
  if (n < kMinFitPoints) return;
  double xs[kSegments];
  double ys[kSegments];
  bool sorted = true;
  double sum_x = 0;
  for (int i = 0; i < n; ++i) {
    const Point& p = ring_[(ring_head_ + i) % kSegments];
    xs[i] = p.dx;
    ys[i] = p.dy;
    sum_x += xs[i];
    if (i > 0 && xs[i] < xs[i - 1]) sorted = false;
  }
  if (!sorted) {  // out-of-order device stamps: insertion sort, the input is nearly sorted
    for (int i = 1; i < n; ++i) {
      const double x = xs[i], y = ys[i];
      int j = i - 1;
      for (; j >= 0 && xs[j] > x; --j) {
        xs[j + 1] = xs[j];
        ys[j + 1] = ys[j];
      }
      xs[j + 1] = x;
      ys[j + 1] = y;
    }
  }
  int hull[kSegments];
  int h = 0;
  for (int i = 0; i < n; ++i) {
    while (h >= 2) {
      const int a = hull[h - 2], b = hull[h - 1];
      const double cross = (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a]);
      if (cross > 0) break;
      --h;
    }
    hull[h++] = i;
  }
  const double mean_x = sum_x / n;
  int edge = -1;
  for (int j = 0; j + 1 < h; ++j) {
    if (xs[hull[j + 1]] > xs[hull[j]]) edge = j;  // last usable edge so far
    if (xs[hull[j + 1]] >= mean_x && edge >= 0) break;
  }
  if (edge < 0) return;  // every point at the same device time
  const int a = hull[edge], b = hull[edge + 1];
  const double slope = std::clamp((ys[b] - ys[a]) / (xs[b] - xs[a]), -kMaxDrift, kMaxDrift);
  double residual = 0;
  for (int i = 0; i < n; ++i) residual += ys[i] - (ys[a] + slope * (xs[i] - xs[a]));
  residual /= n;
  const double span = xs[n - 1] - xs[0];
  drift_ = slope;
  const double significance = std::max(kMinSignificance, kSignificanceTimesPoints / n);
  drift_applied_ = std::abs(slope) * span > significance * residual;
}

Correction SkewEstimator::apply(Nanos device_time, const Correction& fallback) {
  const Nanos offset = origin_offset_ + roundToNanos(predict(device_time));
  offset_ = offset;
  converged_ = epoch_samples_ >= 2;
  Nanos event_time;
  if (__builtin_add_overflow(device_time, offset, &event_time)) return fallback;
  return {event_time, offset};
}

Correction SkewEstimator::observe(Nanos device_time, Nanos reference_time,
                                  TimeReference reference) {
  reference_ = reference;
  return observe(device_time, reference_time);
}

Correction SkewEstimator::observeReferenceOnly(Nanos reference_time, TimeReference reference) {
  reference_ = reference;
  last_seen_ = reference_time;
  return {reference_time, 0};
}

Correction SkewEstimator::observe(Nanos device_time, Nanos reference_time) {
  return trust(device_time, estimate(device_time, reference_time));
}

Correction SkewEstimator::trust(Nanos device_time, const Correction& corrected) const {
  const Nanos tol = options_->tolerance;
  Nanos shift;
  if (tol <= 0 || __builtin_sub_overflow(corrected.event_time, device_time, &shift))
    return corrected;
  if ((shift <= tol && shift >= -tol) || (!converged_ && shift > 0 && shift < options_->step))
    return {device_time, 0};
  return corrected;
}

Correction SkewEstimator::estimate(Nanos device_time, Nanos reference_time) {
  ++samples_;
  last_seen_ = reference_time;
  Nanos theta;
  if (__builtin_sub_overflow(reference_time, device_time, &theta))
    return {reference_time, 0};  // a device time no clock can have; not an observation
  const Sample s{device_time, theta};
  const Correction as_reference{reference_time, theta};

  if (epoch_samples_ == 0) {
    startEpoch(s, 1);
    offset_ = theta;
    converged_ = false;
    return as_reference;
  }

  const double gap = std::abs(rel(device_time, last_device_time_));
  const double e = rel(theta, origin_offset_) - predict(device_time);
  const double tolerance = std::max(kMinTolerance, kHighJitters * jitter_);
  const double low_tolerance = std::max(kMinTolerance, jitter_) + kRateTolerance * gap;
  const double high_tolerance = tolerance + kRateTolerance * gap;

  Kind kind = Kind::kNone;
  if (std::abs(e) > static_cast<double>(options_->step)) {
    kind = Kind::kJump;
  } else if (epoch_samples_ >= kWarmup) {
    if (e < -low_tolerance)
      kind = Kind::kJump;  // below the envelope: delay cannot do that, the clock moved
    else if (e > high_tolerance)
      kind = Kind::kHigh;  // above: queueing delay, or the clock moved back
  }

  if (kind != Kind::kJump) {
    // Delay statistics, clipped so that one long queueing delay does not blow the tolerance up.
    const double residual = std::clamp(e, 0.0, 2 * high_tolerance) - jitter_;
    if (samples_ >= kJitterSamples)
      jitter_ += residual * (1.0 / kJitterSamples);
    else
      jitter_ += residual / static_cast<double>(samples_);
  }

  if (kind == Kind::kNone) {
    candidate_kind_ = Kind::kNone;
    candidate_count_ = 0;
    addToHistory(s);
    return apply(device_time, as_reference);
  }

  // A suspected step: collect consistent samples, confirm with enough of them.
  Candidate& candidate = candidate_.get();
  if (candidate_kind_ == kind && consistent(s, candidate.last, tolerance)) {
    ++candidate_count_;
    const double dd = rel(device_time, candidate.best.device_time);
    if (rel(theta, candidate.best.offset) - driftUsed() * dd < 0) candidate.best = s;
  } else {
    candidate_kind_ = kind;
    candidate_count_ = 1;
    candidate.best = s;
    candidate.big_jump = std::abs(e) > static_cast<double>(options_->step) ? 1 : 0;
    candidate.reference = reference_time;
  }
  candidate.last = s;

  if (kind == Kind::kHigh) {
    // Most likely a delayed message: it is corrected with the current estimate (which is right
    // for a delay) and kept in the history, where the envelope ignores it.
    if (candidate_count_ < kHighConfirm) {
      addToHistory(s);
      return apply(device_time, as_reference);
    }
  } else if (candidate_count_ < kConfirm) {
    saturatingIncrement(candidate.suspect);
    converged_ = false;
    return as_reference;
  }

  // Confirmed: restart the filter from the candidates.
  if (candidate.big_jump != 0) {
    if (candidate.steps != UINT16_MAX) ++candidate.steps;
    candidate.last_step = candidate.reference;
  } else {
    if (candidate.shifts != 0x7fff) ++candidate.shifts;
  }
  const int count = candidate_count_;
  const Sample best = candidate.best;
  startEpoch(best, count);
  last_device_time_ = device_time;
  return apply(device_time, as_reference);
}

}  // namespace gw::clock
