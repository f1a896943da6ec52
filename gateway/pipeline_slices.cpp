// Bursts in bounded slices (issue 13, design: "Limits and scale"): 100,000 windows ending at
// the same instant, or 200,000 sensors going silent together, are handled a slice per event
// loop turn, each slice posted behind the sockets and the control requests that are ready, so
// neither ingest nor `gatewayctl` waits for the whole burst.
#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <charconv>

#include "gateway/pipeline_impl.h"

namespace gw {

/// Windows closed per slice at most: an aggregate record and the rules on it each (3–10 µs
/// at 100,000 series, cache misses included)…
constexpr std::size_t kWindowSlice = 1000;
/// … and for at most this long (checked every kWindowStep closes), so that no slice holds the
/// loop for more than a few ms whatever a close costs (issue 13: ≤ 10 ms stalls).
constexpr Nanos kSliceBudget = 2 * kNanosPerMilli;
constexpr std::size_t kWindowStep = 64;
/// Series whose alert deadline came handled per slice at most, kAlertStep at a time for at
/// most kSliceBudget (an event each, its outbox row and JSON: a slice of 1,000 took several ms
/// of loop CPU at 100,000 series).
constexpr std::size_t kAlertSlice = 1000;
constexpr std::size_t kAlertStep = 100;

void Pipeline::Impl::sliceWindows() {
  if (window_slice_posted || !windows || stopped || windows->closing() == 0) return;
  window_slice_posted = true;
  boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
    if (a.expired() || stopped) return;
    window_slice_posted = false;
    ++window_slices;
    // Timed as any named work (LoopWorkMeter::run): the thread's CPU clock, a system call, read
    // after the slice only when it took a millisecond or more, and before it only when the
    // last reading is old, instead of twice per slice (issue 16: a close burst at 100,000
    // devices is a few hundred slices every 10 s).
    std::size_t closed = 0;
    loop_work.run(
        LoopWorkKind::kWindowClose,
        [&] {
          const Nanos start = time.mono();
          while (closed < kWindowSlice && windows->closing() > 0) {
            const std::size_t step = std::min(kWindowStep, kWindowSlice - closed);
            windows->closeSome(step);
            closed += step;
            if (time.mono() - start >= kSliceBudget) break;
          }
        },
        [&closed] { return fmt::format("up to {} windows", closed); });
    commitSoon();
    sliceWindows();
  });
}

void Pipeline::Impl::tickAlerts() {
  bool more = false;
  loop_work.run(LoopWorkKind::kAlertTick, [&] {
    const Nanos now = time.wall(), start = time.mono();
    std::size_t handled = 0;
    do {
      more = alert_engine->tick(now, alert_events, kAlertStep);
      handled += kAlertStep;
      if (!alert_events.empty()) journalAlerts();
    } while (more && handled < kAlertSlice && time.mono() - start < kSliceBudget);
  });
  commitSoon();
  if (!more || alert_slice_posted || stopped) return;
  alert_slice_posted = true;
  boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
    if (a.expired() || stopped) return;
    alert_slice_posted = false;
    tickAlerts();
  });
}

/// A full batch is committed in a turn of its own (posted: it runs before what ingest or a
/// slice posts after it), not inside the handler that filled it, so a turn holds either a
/// slice of messages or windows or a commit, never both (issue 13).
void Pipeline::Impl::commitSoon() {
  if (commit_posted || stopped || commit_failing || journal->pending() < cfg.buffer.batch) return;
  commit_posted = true;
  boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
    if (a.expired() || stopped) return;
    commit_posted = false;
    if (journal->pending() >= cfg.buffer.batch && !commit_failing) commitNow();
  });
}

namespace {

/// The watermark as persisted: lowered to the latest window end (of any configured size) at or
/// below it. Restored, it closes exactly the windows the exact watermark would (no window ends
/// between the two) and the replay raises it again; but it changes only when a window end is
/// passed, so the state row (a 4 KiB WAL frame) is not rewritten by every commit (issue 16).
Nanos persistedWatermark(Nanos watermark, const std::vector<Nanos>& sizes) {
  if (watermark <= 0) return watermark;  // before any input (INT64_MIN), or before 1970: exact
  Nanos end = 0;
  for (const Nanos size : sizes) end = std::max(end, watermark / size * size);
  return end;
}

}  // namespace

/// The windows' restart point, persisted with every commit that changes it: "<watermark>
/// <replay-from seq>", plus " <end> <series> <size>" of the last window emitted while a window
/// end is half out (Journal::putState() skips an unchanged value).
std::string Pipeline::Impl::windowsState() const {
  std::string st =
      fmt::format("{} {}", persistedWatermark(windows->watermark(), cfg.aggregate.windows.sizes),
                  windows->replayFrom());
  if (const auto k = windows->closedThrough())
    st += fmt::format(" {} {} {}", k->end, k->series, k->size);
  return st;
}

bool Pipeline::Impl::parseWindowsState(std::string_view st, Nanos& watermark, std::uint64_t& from,
                                       std::optional<aggregators::Aggregator::WindowKey>& partial) {
  // from_chars: exact int64 on 32-bit targets too.
  const char* p = st.data();
  const char* end = st.data() + st.size();
  auto field = [&](auto& out, bool first) {
    if (!first) {
      if (p == end || *p != ' ') return false;
      ++p;
    }
    const auto r = std::from_chars(p, end, out);
    p = r.ptr;
    return r.ec == std::errc();
  };
  if (!field(watermark, true) || !field(from, false)) return false;
  if (p == end) return true;
  aggregators::Aggregator::WindowKey k;
  if (!field(k.end, false) || !field(k.series, false) || !field(k.size, false) || p != end)
    return false;
  partial = k;
  return true;
}

}  // namespace gw
