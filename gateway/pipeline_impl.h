// The engine behind Pipeline (internal to gateway/): it owns the journal, builds the
// components from the config, and implements the Ingest every source reports to. Its status
// snapshot is filled in pipeline_status.cpp.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "aggregators/aggregator.h"
#include "alerts/alert_engine.h"
#include "buffer/journal.h"
#include "core/log.h"
#include "core/source.h"
#include "gateway/bad_input.h"
#include "gateway/clock_skew.h"
#include "gateway/clock_table.h"
#include "gateway/config.h"
#include "gateway/device_query.h"
#include "gateway/forwarder.h"
#include "gateway/loop_work.h"
#include "gateway/pipeline.h"
#include "gateway/pipeline_watch.h"
#include "gateway/run_delay.h"
#include "gateway/status.h"

namespace gw {

struct Pipeline::Impl final : Ingest {
  Impl(boost::asio::io_context& io, const config::Config& cfg, Clock clock);
  ~Impl() override;

  // Ingest (called by the sources).
  std::uint64_t reading(Series& series, const Decoded& decoded, Nanos reference_time,
                        TimeReference reference) override;
  void bad(const BadInput& input) override;
  std::uint64_t appendedSeq() const override;
  void turnDone() override { loop_work.closeTurn(); }
  bool backpressure() const override;
  void brokerStamp(Nanos stamp, Nanos receive_time) override;
  void putState(std::string_view key, std::string value) override;
  std::optional<std::string> state(std::string_view key) const override;
  void deviceOnline(std::string_view device, bool online) override;

  void start();
  void stop();
  void commitNow();
  void pokeSoon();  // records appended: the forwarders once this turn of the loop is done
  bool poke_posted = false;
  void onDurable();  // the journal's sync thread made more durable (taken at a watch tick)
  // synchronous = full: the journal's sync thread sets this after each sync instead of posting
  // to the loop; the loop takes it at its next grid tick (takeDurable()), so a sync costs the
  // sync thread no epoll_ctl and the loop no wakeup of its own (issue 16). Shared: the sync
  // thread may still set it while this is destroyed (the journal goes last).
  std::shared_ptr<std::atomic<bool>> durable_ready = std::make_shared<std::atomic<bool>>(false);
  void takeDurable();

  // Status (pipeline_status.cpp).
  StatusSnapshot snapshot(StatusParts what, const DeviceQuery* devices = nullptr) const;
  void sampleRates(Nanos now) const;
  void snapshotInSlices(StatusParts what, DeviceQuery devices,
                        std::function<void(StatusSnapshot)> done) const;
  void walkDevices(StatusParts what, std::shared_ptr<DeviceWalk> walk,
                   std::function<void(StatusSnapshot)> done) const;
  void describeDevices(std::vector<DeviceClockStatus>& devices) const;

  // --- engine -------------------------------------------------------------------------------
  void onWindowClosed(const aggregators::Aggregate& a);
  void journalAlerts();
  void restoreState();
  void restoreAlerts(Nanos now);
  void restoreWindows(Nanos now);
  void armWindowTimer();
  // Runs fn every interval; an interval that is a multiple of kLoopGrid keeps its timer on the
  // loop's grid (gateway/pipeline_watch.h), so that it expires with a watch tick.
  void every(boost::asio::steady_timer& timer, Nanos interval, std::function<void()> fn,
             Nanos due = 0);
  size_t maxPending() const;
  clock::ClockOptions clockOptions() const;

  boost::asio::io_context& io;
  config::Config cfg;
  Clock time;
  std::unique_ptr<buffer::Journal> journal;
  std::vector<std::unique_ptr<Source>> sources;
  std::vector<std::unique_ptr<Forwarder>> forwarders;  // sinks
  std::vector<std::unique_ptr<Forwarder>> outboxes;    // alert notifiers
  std::unique_ptr<aggregators::Aggregator> windows;
  std::unique_ptr<alerts::AlertEngine> alert_engine;
  std::vector<alerts::AlertEvent> alert_events;  // scratch
  std::vector<alerts::Statistic> window_stats;   // scratch
  boost::asio::steady_timer commit_timer{io}, retention_timer{io}, stats_timer{io};
  boost::asio::steady_timer window_timer{io}, alert_timer{io};
  std::optional<Nanos> window_timer_at;  // the deadline window_timer is armed for
  std::uint64_t committed_cursor_sum = 0;
  bool stopped = false;
  /// Timer handlers hold a weak reference: a handler already queued when the pipeline is
  /// destroyed (a reload replaces it from inside a handler) must not touch it.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  bool sources_started = false;  // committed() goes to sources only after start()
  /// The last commit failed: reading() leaves the retries to the commit timer instead of
  /// stalling the loop on every message (a locked journal waits up to 200 ms per try).
  bool commit_failing = false;

  // Counters.
  std::uint64_t messages = 0, readings = 0, commit_failures = 0, aggregates = 0, alert_count = 0;
  std::map<std::string, std::uint64_t, std::less<>> bad_counts;
  log::RateLimiter bad_log;
  BadDeviceCounts bad_devices;  // gateway/bad_input.h
  // Alert events: each is in the outbox; the log shows a burst of them at a bounded rate.
  log::RateLimiter alert_log{kNanosPerSecond / 50};

  // Clock-skew estimators: one per device (bounded by [limits]), one for the gateway's own
  // clock vs the broker's.
  clock::ClockTable clocks;
  clock::SkewEstimator gateway_clock;
  /// Devices that announced themselves online or offline (Sparkplug births and deaths).
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const noexcept {
      return std::hash<std::string_view>{}(v);
    }
  };
  std::unordered_map<std::string, bool, StringHash, std::equal_to<>> device_online;

  // [limits] (gateway/limits.h): readings past max_series, logged at a bounded rate.
  std::uint64_t readings_over_limit = 0;
  log::RateLimiter over_limit_log;
  bool overLimit(std::string_view what, const Series& series);
  void releaseIdle();
  std::size_t evicted_since_trim = 0;
  // The event loop's longest stall: a 10 ms tick's lateness (gateway/pipeline_watch.h).
  void watchLoop(Nanos late);
  LoopTicker loop_ticker{io, kLoopGrid, [this](Nanos late) {
                           watchLoop(late);
                           takeDurable();
                         }};
  Nanos loop_stall_max = 0, loop_stall_bucket = 0, loop_stall_previous = 0;
  Nanos loop_bucket_start = 0;
  // Which named handler ran longest (gateway/loop_work.h); a long stall is logged with it.
  LoopWorkMeter loop_work{time.mono};
  // Ingest timed per turn (kIngest): the turn's messages, and series new to the journal.
  void beginIngest();
  void countSeries(SeriesId id);
  std::size_t turn_messages = 0, turn_new_series = 0;
  SeriesId ingest_ids_seen = 0;
  // The longest stall counting only the loop thread's CPU time in it (waits for a CPU or for
  // I/O left out): work that holds the loop, apart from a loaded machine.
  Nanos loop_cpu_last = -1, loop_cpu_max = 0, loop_cpu_bucket = 0, loop_cpu_previous = 0;
  Nanos loop_cpu_last_at = 0;  // time.mono() of loop_cpu_last (watchReadsCpu())
  // Of a stall, the time the loop thread waited for a CPU (run queue, gateway/run_delay.h):
  // read beside the CPU clock while the loop is busy or late (not while it idles: issue 16).
  RunDelayClock loop_runq_clock;
  Nanos loop_runq_last = -1, loop_runq_max = 0, loop_runq_bucket = 0, loop_runq_previous = 0;
  log::RateLimiter stall_log{30 * kNanosPerSecond};

  // Bursts in slices (pipeline_slices.cpp).
  void sliceWindows();
  void tickAlerts();
  std::string windowsState() const;
  static bool parseWindowsState(std::string_view st, Nanos& watermark, std::uint64_t& from,
                                std::optional<aggregators::Aggregator::WindowKey>& partial);
  bool window_slice_posted = false, alert_slice_posted = false;
  void commitSoon();
  bool commit_posted = false;
  std::uint64_t window_slices = 0;  // turns that closed windows (tests count them)

  // --- status state (pipeline_status.cpp) ----------------------------------------------------
  // Rates come from samples of the counters taken when a snapshot is asked for (gatewayd asks
  // every few seconds for STATUS=), at most one a second, kept for 30 s: a rate is the average
  // over the last 1..15 s, or none right after start.
  struct CounterSample {
    Nanos mono = 0;
    std::uint64_t readings = 0;
    std::map<std::string, std::uint64_t, std::less<>> sent;  // per sink
  };
  mutable std::vector<CounterSample> samples;
  Nanos control_since = 0;

  const CounterSample* rateBase(Nanos now) const;
};

}  // namespace gw
