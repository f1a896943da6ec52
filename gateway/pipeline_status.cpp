// The engine's status: fills a StatusSnapshot (gateway/status.h) with the parts a view asks
// for, and keeps the counter samples the rates are measured against. Rendering is elsewhere
// (status_json.cpp, metrics/exposition.cpp).
#include <algorithm>
#include <boost/asio/post.hpp>

#include "gateway/pipeline_impl.h"

namespace gw {
namespace {

constexpr std::size_t kFiringListed = 1000;  // firing alerts listed by the alerts view

/// Per second since `base`; none without a base or when the counter went back.
std::optional<double> rate(const Pipeline::Impl::CounterSample* base, Nanos now,
                           std::uint64_t current, std::uint64_t before) {
  if (!base || current < before) return std::nullopt;
  const double seconds = static_cast<double>(now - base->mono) / kNanosPerSecond;
  return static_cast<double>(current - before) / seconds;
}

bool usable(const Pipeline::Impl::CounterSample& sample, Nanos now) {
  return now - sample.mono <= 15 * kNanosPerSecond && now - sample.mono >= kNanosPerSecond;
}

}  // namespace

void Pipeline::Impl::sampleRates(Nanos now) const {
  if (!samples.empty() && now - samples.back().mono < kNanosPerSecond) return;
  CounterSample sample;
  sample.mono = now;
  sample.readings = readings;
  for (const auto& f : forwarders) sample.sent[f->name()] = f->status().sent;
  samples.push_back(std::move(sample));
  while (now - samples.front().mono > 30 * kNanosPerSecond) samples.erase(samples.begin());
}

/// The sample to measure rates against: the oldest of the last 15 s that is at least 1 s old,
/// or nullptr.
const Pipeline::Impl::CounterSample* Pipeline::Impl::rateBase(Nanos now) const {
  for (const auto& sample : samples)
    if (usable(sample, now)) return &sample;
  return nullptr;
}

StatusSnapshot Pipeline::Impl::snapshot(StatusParts what, const DeviceQuery* devices) const {
  using namespace status_part;
  const Nanos wall = time.wall(), mono = time.mono();
  sampleRates(mono);
  const CounterSample* base = rateBase(mono);
  StatusSnapshot s;
  s.gateway_id = cfg.gateway.id;
  s.since = control_since;
  s.wall = wall;

  if (what & (kCounters | kSources))
    for (const auto& source : sources) s.sources.push_back(source->status());
  if (what & kCounters) {
    for (const auto& src : s.sources) s.counters.messages += src.figure("messages");
    s.counters.readings = readings;
    s.counters.rate_in = rate(base, mono, readings, base ? base->readings : 0);
    s.counters.bad = bad_counts;
    LimitsStatus& l = s.limits;
    l.max_series = cfg.limits.max_series;
    l.series_idle_s = cfg.limits.series_idle / kNanosPerSecond;
    l.readings_over_limit = readings_over_limit;
    l.clocks_evicted = clocks.evicted();
    l.loop_stall_max = loop_stall_max;
    l.loop_stall_recent = std::max(loop_stall_bucket, loop_stall_previous);
    l.loop_stall_cpu_max = loop_cpu_max;
    l.loop_stall_cpu_recent = std::max(loop_cpu_bucket, loop_cpu_previous);
    l.loop_stall_runq_max = loop_runq_max;
    l.loop_stall_runq_recent = std::max(loop_runq_bucket, loop_runq_previous);
    l.loop_work_recent = loop_work.longestRecent();
    l.loop_work_longest = loop_work.longest();
    for (std::size_t i = 0; i < LoopWorkMeter::kKinds; ++i) {
      l.loop_work_recent_by_kind[i] = loop_work.recent(static_cast<LoopWorkKind>(i));
      l.loop_work_max_by_kind[i] = loop_work.max(static_cast<LoopWorkKind>(i));
    }
  }
  if (!(what & kSources)) s.sources.clear();

  buffer::JournalStats js;
  if (what & (kSinks | kJournal)) js = journal->stats();
  if (what & kSinks) {
    for (size_t i = 0; i < forwarders.size(); ++i) {  // built in cfg.sinks' order
      SinkStatus& sink = s.sinks.emplace_back();
      sink.forwarder = forwarders[i]->status();
      const std::string& name = sink.forwarder.name;
      sink.target = cfg.sinks[i].config->target();
      if (const auto it = js.sinks.find(name); it != js.sinks.end()) sink.journal = it->second;
      if (base)
        if (const auto it = base->sent.find(name); it != base->sent.end())
          sink.rate_out = rate(base, mono, sink.forwarder.sent, it->second);
    }
  }
  if (what & kJournal) {
    JournalStatus& j = s.journal;
    j.path = (cfg.gateway.state_dir / "journal.db").string();
    j.commit_failures = commit_failures;
    j.pending = journal->pending();
    j.max_size = cfg.buffer.max_size;
    j.max_age_s = cfg.buffer.max_age / kNanosPerSecond;
    for (const auto& [name, b] : js.sinks) {
      if (std::none_of(forwarders.begin(), forwarders.end(),
                       [&, &name = name](const auto& f) { return f->name() == name; }))
        continue;
      j.backlog = std::max(j.backlog, b.backlog);
      j.dropped += b.dropped;
      if (b.oldest_unsent && (!j.oldest_unsent || *b.oldest_unsent < *j.oldest_unsent))
        j.oldest_unsent = b.oldest_unsent;
    }
    j.stats = std::move(js);
  }

  if (what & (kClocks | kDevices)) {
    s.clock.gateway = gateway_clock.state();
    s.clock.max_skew = cfg.clock.max_skew;
    s.clock.devices = clocks.size();
    // Totals and names kept by the table: status never walks every device (issue 13).
    s.clock.out_of_bounds = clocks.outOfBounds();
    s.clock.steps = clocks.steps();
    for (const std::string& name : clocks.outOfBoundsNames()) {
      if (s.clock.out_of_bounds_names.size() >= ClockStatus::kSkewNamesShown) break;
      s.clock.out_of_bounds_names.push_back(name);
    }
  }
  if (what & kDevices) {
    const DeviceQuery all_sorted{"*", 0, DeviceQuery::Sort::kName};
    s.clock.per_device =
        selectDevices(clocks, devices ? *devices : all_sorted, mono, s.clock.matched);
    describeDevices(s.clock.per_device);
  }

  if ((what & kWindows) && windows)
    s.windows = WindowStatus{windows->stats(), windows->memoryBytes(), aggregates};

  if (what & (kAlerts | kUndelivered)) {
    AlertStatus& a = s.alerts;
    a.rules = cfg.alerts.size();
    if (what & kUndelivered) a.rule_list = cfg.alerts;  // as many as the config has
    a.engine = alert_engine != nullptr;
    a.events = alert_count;
    if (alert_engine) {
      a.counters = alert_engine->counters();
      // The list for `gatewayctl alerts` only, and bounded; counts come from the counters.
      if (what & kUndelivered) a.firing = alert_engine->firing(kFiringListed);
    }
    for (const auto& f : outboxes) a.notifiers.push_back(f->status());
  }
  if (what & kUndelivered) {
    std::vector<ReadingRecord> outbox;
    for (size_t i = 0; i < outboxes.size(); ++i) {
      const ForwarderStatus& st = s.alerts.notifiers[i];
      const std::string notifier = st.name.substr(st.name.find('.') + 1);
      journal->readAlerts(outboxes[i]->cursor(), 50, outbox);
      bool head = true;
      for (const auto& r : outbox) {
        auto e = alerts::parseAlertJson(r.alert);
        if (!e || std::find(e->notify.begin(), e->notify.end(), notifier) == e->notify.end())
          continue;
        // Only the oldest is being tried; the others wait behind it (in order).
        const bool tried = head && !st.up;
        s.alerts.undelivered.push_back(
            {std::move(*e), notifier, tried ? st.retries : 0, tried ? st.last_error : ""});
        head = false;
      }
    }
  }
  return s;
}

/// What the clock table does not know about a listed device.
void Pipeline::Impl::describeDevices(std::vector<DeviceClockStatus>& devices) const {
  for (DeviceClockStatus& d : devices) {
    if (auto it = device_online.find(d.device); it != device_online.end()) d.online = it->second;
    d.bad = bad_devices.count(d.device);
  }
}

void Pipeline::Impl::snapshotInSlices(StatusParts what, DeviceQuery devices,
                                      std::function<void(StatusSnapshot)> done) const {
  if (!(what & status_part::kDevices)) return done(snapshot(what));
  walkDevices(what, std::make_shared<DeviceWalk>(std::move(devices)), std::move(done));
}

/// One slice of the walk now (DeviceWalk::kSlice devices by position in the clock table's
/// dense array: ~1 ms at 200,000 devices, whatever the table's size); the next one posted
/// behind whatever else is ready on the loop (sockets, timers, other requests).
void Pipeline::Impl::walkDevices(StatusParts what, std::shared_ptr<DeviceWalk> walk,
                                 std::function<void(StatusSnapshot)> done) const {
  if (!walk->step(clocks, time.mono())) {
    boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive), what, walk = std::move(walk),
                           done = std::move(done)]() mutable {
      if (!a.expired()) walkDevices(what, std::move(walk), std::move(done));
    });
    return;
  }
  using namespace status_part;
  StatusSnapshot s = snapshot((what & ~kDevices) | kClocks);
  s.clock.per_device = walk->take(s.clock.matched);
  describeDevices(s.clock.per_device);
  done(std::move(s));
}

}  // namespace gw
