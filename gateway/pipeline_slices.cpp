// Bursts in bounded slices (issue 13, design: "Limits and scale"): 100,000 windows ending at
// the same instant, or 200,000 sensors going silent together, are handled a slice per event
// loop turn, each slice posted behind the sockets and the control requests that are ready, so
// neither ingest nor `gatewayctl` waits for the whole burst.
#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <charconv>

#include "gateway/pipeline_impl.h"

namespace gw {

/// Windows closed per slice: an aggregate record and the rules on it each (a few µs).
constexpr std::size_t kWindowSlice = 1000;
/// Series whose alert deadline came handled per slice.
constexpr std::size_t kAlertSlice = 1000;

void Pipeline::Impl::sliceWindows() {
  if (window_slice_posted || !windows || stopped || windows->closing() == 0) return;
  window_slice_posted = true;
  boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
    if (a.expired() || stopped) return;
    window_slice_posted = false;
    windows->closeSome(kWindowSlice);
    if (journal->pending() >= cfg.buffer.batch && !commit_failing) commitNow();
    sliceWindows();
  });
}

void Pipeline::Impl::tickAlerts() {
  const bool more = alert_engine->tick(time.wall(), alert_events, kAlertSlice);
  if (!alert_events.empty()) journalAlerts();
  if (!more || alert_slice_posted || stopped) return;
  alert_slice_posted = true;
  boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
    if (a.expired() || stopped) return;
    alert_slice_posted = false;
    if (journal->pending() >= cfg.buffer.batch && !commit_failing) commitNow();
    tickAlerts();
  });
}

/// Firing alerts up to this many: the set is rewritten with every commit that changed it.
constexpr std::size_t kFiringEachCommit = 1000;

/// Whether the set of firing alerts is written with this commit. It is O(firing) to build
/// (200,000 sensors gone silent: ~60 MB of JSON), so past kFiringEachCommit at most once a
/// second. What a crash within that second costs (README, "Plant scale"): an alert that fired
/// since is not restored as firing, so it is triggered again, with the same dedup_key (the
/// incident stays one); one that resolved since is restored as firing and resolved again by
/// its next data.
bool Pipeline::Impl::firingDue() {
  if (firing_force || alert_engine->firingCount() <= kFiringEachCommit) return true;
  const Nanos now = time.mono();
  if (now - firing_written_at < kNanosPerSecond) return false;
  firing_written_at = now;
  return true;
}

/// The windows' restart point, persisted with every commit: "<watermark> <replay-from seq>",
/// plus " <end> <series> <size>" of the last window emitted while a window end is half out.
std::string Pipeline::Impl::windowsState() const {
  std::string st = fmt::format("{} {}", windows->watermark(), windows->replayFrom());
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
