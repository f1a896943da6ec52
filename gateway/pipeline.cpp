// The engine: builds the components a config names, runs the journal's group commit, and
// feeds committed records to the windows, alerts and sinks (design: "Data flow", "Threads").
#include "gateway/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <charconv>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "alerts/outbox_sink.h"
#include "core/sink.h"
#include "gateway/pipeline_impl.h"
#include "gateway/stats_line.h"

namespace gw {

Pipeline::Impl::Impl(boost::asio::io_context& io_, const config::Config& cfg_, Clock clock_)
    : io(io_),
      cfg(cfg_),
      time(std::move(clock_)),
      clocks(clockOptions(), cfg.limits.max_series, cfg.limits.series_idle),
      gateway_clock(clockOptions()) {
  control_since = time.wall();
  buffer::JournalOptions jo;
  jo.path = cfg.gateway.state_dir / "journal.db";
  jo.max_size_bytes = cfg.buffer.max_size;
  jo.max_age = cfg.buffer.max_age;
  jo.synchronous = cfg.buffer.synchronous;
  jo.sync_interval = cfg.buffer.commit_interval;  // at most one fsync per group commit
  jo.min_free_bytes = cfg.buffer.min_free;
  jo.min_free_percent = cfg.buffer.min_free_percent;
  jo.clock = time.wall;
  jo.expected_series = std::min<std::size_t>(cfg.limits.max_series, std::size_t{1} << 18);
  // Issue 13: names past max_series are cached, not kept (a device inventing names).
  jo.pinned_series = cfg.limits.max_series;
  // Issue 13: a commit's loop time bounded, by rows (a full batch and what came in before its
  // turn) and by time; commitNow() posts the rest.
  jo.max_commit_rows = 2 * cfg.buffer.batch;
  jo.commit_budget = 2 * kNanosPerMilli;
  // Cursor names come from the components themselves, never from literals here.
  for (const auto& s : cfg.sinks) jo.sinks.push_back(s.config->name());
  // The windows' replay point: readings of open windows stay until their window is out.
  if (cfg.aggregate.enabled) jo.sinks.push_back("windows");
  if (cfg.aggregate.enabled) jo.sinks_without_series.push_back("windows");
  for (const auto& n : cfg.notify.notifiers) jo.sinks.push_back(n->name());
  // Notifiers send the alert record's JSON, never its series (journal.h).
  for (const auto& n : cfg.notify.notifiers) jo.sinks_without_series.push_back(n->name());
  journal = buffer::Journal::open(jo);
  // synchronous = full: a commit is acknowledged once the journal's sync thread has fdatasynced
  // it, at the loop's next grid tick (takeDurable(): no wakeup of the loop per sync).
  // The sync thread may call it while this is being destroyed (the journal goes last): it
  // touches only the shared flag.
  journal->onDurable(
      [ready = durable_ready](std::uint64_t) { ready->store(true, std::memory_order_release); });

  BuildContext context{io, cfg.gateway.id, cfg.clock.broker_reference, cfg.clock.broker_property};
  context.commit_interval = cfg.buffer.commit_interval;  // issue 16: the MQTT read batching
  // The forwarders read the same clock (records' ages, on their worker threads).
  ForwarderEnv env{time, {}};
  env.loop_work = &loop_work;  // their delivery reports are named in the loop's attribution
  for (const auto& s : cfg.sinks) {
    forwarders.push_back(
        std::make_unique<Forwarder>(io, *journal, s.config->build(context), s.forward, env));
  }
  if (forwarders.empty())
    log::warn(
        "no sink configured ([kafka], [timeseries], …): readings only accumulate in the "
        "journal");
  if (cfg.aggregate.enabled) {
    windows = aggregators::Aggregator::create(
        cfg.aggregate.windows, [this](const aggregators::Aggregate& a) { onWindowClosed(a); });
    // A few closes inline (a small plant's windows close with the reading that ends them); a
    // burst in slices of its own turns: sliceWindows().
    windows->setCloseBudget(64);
  }
  if (!cfg.alerts.empty()) {
    alerts::EngineOptions eo;
    eo.gateway_id = cfg.gateway.id;
    eo.max_series = cfg.limits.max_series;
    eo.forget_after = cfg.limits.series_idle;
    alert_engine = std::make_unique<alerts::AlertEngine>(cfg.alerts, eo);
  }
  // One outbox forwarder per notifier: one event at a time, in order, retried with backoff
  // (and Retry-After) until delivered; a 400 is skipped and kept as the last error.
  ForwarderOptions outbox;
  outbox.batch = 1;
  outbox.alerts_only = true;
  outbox.retry_min = cfg.notify.retry.initial;
  outbox.retry_max = cfg.notify.retry.max;
  for (const auto& n : cfg.notify.notifiers)
    outboxes.push_back(std::make_unique<Forwarder>(io, *journal, n->build(context), outbox, env));
  // Sources last: a CoAP source binds its ports here, so a busy port stops start-up cleanly.
  for (const auto& s : cfg.sources) sources.push_back(s->build(context, *this));
}

Pipeline::Impl::~Impl() { stop(); }

clock::ClockOptions Pipeline::Impl::clockOptions() const {
  return {cfg.clock.max_skew, cfg.clock.step, cfg.clock.tolerance};
}

/// Drops the clock estimates idle for series_idle; after many, gives the freed heap back to
/// the system (glibc keeps it otherwise: RSS would stay at the peak of a name-inventing device).
void Pipeline::Impl::releaseIdle() {
  evicted_since_trim += clocks.evictIdle(time.mono());
  if (evicted_since_trim < 1000) return;
  evicted_since_trim = 0;
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

/// A reading goes on without per-series state: counted, logged at a bounded rate.
bool Pipeline::Impl::overLimit(std::string_view what, const Series& series) {
  ++readings_over_limit;
  std::uint64_t suppressed = 0;
  if (over_limit_log.allow(time.mono(), suppressed))
    log::warn(
        "limits.max_series ({}) reached: {} of device '{}' not tracked; its readings are "
        "journaled and forwarded without windows, alerts or clock correction ({} more readings "
        "like this not logged). Raise [limits] max_series or look for a device inventing names",
        cfg.limits.max_series, what, series.device.substr(0, 100), suppressed);
  return true;
}

void Pipeline::Impl::start() {
  restoreState();
  commitNow();
  for (auto& s : sources) s->start();
  sources_started = true;
  for (auto& f : forwarders) f->poke();  // backlog left from before a restart
  for (auto& f : outboxes) f->poke();
  every(commit_timer, cfg.buffer.commit_interval, [this] { commitNow(); });
  every(retention_timer, kNanosPerSecond, [this] {
    // The journal file pulled away (deleted, moved, replaced) is written back first.
    std::uint64_t removed = 0;
    loop_work.run(
        LoopWorkKind::kRetention,
        [&] {
          if (journal->checkFile()) removed = journal->enforceRetention(time.wall());
          releaseIdle();
        },
        [&] { return fmt::format("{} rows removed", removed); });
  });
  loop_ticker.start();
  if (alert_engine) every(alert_timer, kNanosPerSecond, [this] { tickAlerts(); });
  every(stats_timer, cfg.gateway.stats_interval, [this] {
    loop_work.run(LoopWorkKind::kStats,
                  [this] { logStats(snapshot(kStatsParts), cfg.gateway.stats_json); });
  });
  std::string sinks;
  for (auto& f : forwarders) sinks += (sinks.empty() ? "" : ", ") + f->name();
  log::notice("gatewayd {}: journal {} (last seq {}), {} source(s), sinks: {}", cfg.gateway.id,
              (cfg.gateway.state_dir / "journal.db").string(), journal->stats().last_seq,
              sources.size(), sinks.empty() ? "none" : sinks);
}

void Pipeline::Impl::stop() {
  if (stopped) return;
  do {  // a commit takes a bounded part (JournalOptions::max_commit_rows, commit_budget)
    commitNow();
  } while (journal->pending() > 0 && !commit_failing);
  // The last commit made durable before the sources go, so that they acknowledge it.
  journal->syncNow();
  if (sources_started)
    for (auto& s : sources) s->committed(journal->durableSeq());
  stopped = true;
  for (auto* t : {&commit_timer, &retention_timer, &stats_timer, &window_timer, &alert_timer})
    t->cancel();
  loop_ticker.stop();
  for (auto& s : sources) s->stop();
  for (auto& f : forwarders) f->stop();
  for (auto& f : outboxes) f->stop();
  while (journal->commit() && journal->pending() > 0) {  // the last cursor moves
  }
  logStats(snapshot(kStatsParts), cfg.gateway.stats_json);
}

void Pipeline::Impl::bad(const BadInput& in) {
  beginIngest();
  auto it = bad_counts.find(in.reason);
  if (it == bad_counts.end()) it = bad_counts.emplace(std::string(in.reason), 0).first;
  ++it->second;
  if (!in.device.empty()) bad_devices.add(in.device);
  journal->addDeadLetter({0, time.wall(), std::string(in.source), std::string(in.where),
                          std::string(in.reason), std::string(in.device), in.size,
                          buffer::escapeExcerpt(in.payload)});
  std::uint64_t suppressed = 0;
  if (bad_log.allow(time.mono(), suppressed))
    log::warn(
        "bad input ({}) on topic '{}' ({} bytes); {} more bad messages not logged; "
        "gatewayctl bad shows them",
        in.reason, buffer::escapeExcerpt(in.where, 200), in.size, suppressed);
  loop_work.markTurn();
}

std::uint64_t Pipeline::Impl::appendedSeq() const {
  return journal->lastSeq() + journal->pending();
}

/// True when a source must hold back: the journal cannot commit and memory is at its bound.
bool Pipeline::Impl::backpressure() const { return journal->pending() >= maxPending(); }

/// Rows held in memory while commits fail, at most.
size_t Pipeline::Impl::maxPending() const { return std::max<size_t>(cfg.buffer.batch * 20, 20000); }

void Pipeline::Impl::brokerStamp(Nanos stamp, Nanos receive_time) {
  // The gateway's own clock against the broker's: receive − stamp = delay + skew.
  gateway_clock.observe(stamp, receive_time, TimeReference::kReceive);
}

// State and online flags for stateful decoders (Sparkplug B).
void Pipeline::Impl::putState(std::string_view key, std::string value) {
  journal->putState(key, std::move(value));
}
std::optional<std::string> Pipeline::Impl::state(std::string_view key) const {
  return journal->state(key);
}
void Pipeline::Impl::deviceOnline(std::string_view device, bool online) {
  if (auto it = device_online.find(device); it != device_online.end())
    it->second = online;
  else
    device_online.emplace(std::string(device), online);
}

/// A source's messages are timed as one turn of the loop (gateway/loop_work.h), not one by one:
/// the first message of a turn opens it; the source closes it when the handler that delivers
/// them (an MQTT read's slice, a CoAP request) returns (turnDone(); no post: a posted handler
/// is one more epoll_wait, issue 16).
void Pipeline::Impl::beginIngest() {
  if (loop_work.turnOpen()) return;  // per message: no detail function built while one is open
  if (!loop_work.openTurn(LoopWorkKind::kIngest, [this] {
        return fmt::format("{} messages, {} new series", turn_messages, turn_new_series);
      }))
    return;
  turn_messages = turn_new_series = 0;
}

/// A series id past every id ingest has seen is a series new to the journal (ids are dense):
/// its first-seen work (series row, clock estimator, alert state, index inserts) is in this turn.
void Pipeline::Impl::countSeries(SeriesId id) {
  if (id < ingest_ids_seen) return;
  ++turn_new_series;
  ingest_ids_seen = id + 1;
}

std::uint64_t Pipeline::Impl::reading(Series& series, const Decoded& decoded, Nanos reference_time,
                                      TimeReference reference) {
  beginIngest();
  ++turn_messages;
  // Clock stage: the device's time corrected by its estimated offset; without a device time,
  // the reference itself.
  Nanos event_time = reference_time;
  bool no_clock = false;  // past [limits] max_series: no estimator for this device
  // The first value's series first: the clock table keeps a pointer to the journal's copy of
  // the device name instead of a copy of its own (issue 13: one copy of each name).
  SeriesId first_id = 0;
  const std::string* stable_device = nullptr;
  if (!decoded.values.empty()) {
    if (!decoded.values.front().metric.empty()) series.metric.assign(decoded.values.front().metric);
    first_id = journal->internSeries(series);
    countSeries(first_id);
    // Past max_series the journal's copy is evictable: the clock table keeps its own.
    if (first_id < cfg.limits.max_series) stable_device = &journal->series(first_id).device;
  }
  if (decoded.device_time && decoded.historical) {
    event_time = *decoded.device_time;  // a stored value: its own time, not a clock sample
  } else if (decoded.device_time) {
    if (const auto c = clocks.observe(series.device, time.mono(), *decoded.device_time,
                                      reference_time, reference, stable_device))
      event_time = c->event_time;
    else
      no_clock = true;
  }
  for (std::size_t i = 0; i < decoded.values.size(); ++i) {
    const DecodedValue& v = decoded.values[i];
    if (i > 0 && !v.metric.empty()) series.metric.assign(v.metric);
    const SeriesId id = i == 0 ? first_id : journal->internSeries(series);
    if (i > 0) countSeries(id);
    const std::uint64_t seq =
        journal->append(id, v.value, event_time, decoded.device_time, reference);
    ++readings;
    const bool no_windows = windows && id >= cfg.limits.max_series;
    if (windows && !no_windows) windows->add(id, event_time, v.value, seq);
    if (no_clock || no_windows) overLimit(no_clock ? "the clock" : "the windows", series);
    // Past max_series no alert evaluation: the journal's copy of such a series is evictable.
    if (alert_engine && id < cfg.limits.max_series) {
      // The journal's copy: it never moves, so the engine keeps a pointer to it (issue 13).
      alert_engine->onReading(journal->series(id), v.value, event_time, time.wall(), alert_events);
      if (!alert_events.empty()) journalAlerts();
    }
  }
  if (windows) sliceWindows();
  pokeSoon();
  const std::uint64_t last = appendedSeq();
  commitSoon();
  loop_work.markTurn();
  return last;
}

/// A closed window (from inside the aggregator): an aggregate record, and the rules on it.
void Pipeline::Impl::onWindowClosed(const aggregators::Aggregate& a) {
  journal->appendAggregate(a.series, a);
  ++aggregates;
  // Rules on a window statistic look at the first configured window size.
  if (!alert_engine || a.size != cfg.aggregate.windows.sizes.front()) return;
  window_stats.clear();
  for (Stat st : kStatOrder)
    if (has(a.stats, st)) window_stats.push_back({toString(st), a.get(st)});
  alert_engine->onWindow(journal->series(a.series), a.start, a.end(), window_stats, time.wall(),
                         alert_events);
  if (!alert_events.empty()) journalAlerts();
}

/// Alert events into the outbox (journal), and each one's change of the set of firing alerts
/// (a row of it, keyed by dedup key), both with the next commit, in the same transaction: O(1)
/// per event whatever the number firing (issue 13).
void Pipeline::Impl::journalAlerts() {
  std::string json;
  for (const auto& e : alert_events) {
    json.clear();
    alerts::appendOutboxJson(json, e);
    journal->appendAlert(journal->internSeries(e.series), e.time, e.value, json);
    if (e.state == alerts::AlertState::kFiring)
      journal->putFiring(e.dedup_key, json);
    else
      journal->removeFiring(e.dedup_key);
    ++alert_count;
    std::uint64_t suppressed = 0;
    if (alert_log.allow(time.mono(), suppressed))
      log::notice("alert {}{}", alerts::summary(e),
                  suppressed ? fmt::format(" ({} more alert events not logged)", suppressed) : "");
  }
  alert_events.clear();
}

/// Brings the windows and alert states back after a restart (design: "a window open at a
/// restart is completed from the journal"; an alert firing before it stays firing).
void Pipeline::Impl::restoreState() {
  const Nanos now = time.wall();
  if (alert_engine) restoreAlerts(now);
  if (windows) restoreWindows(now);
}

void Pipeline::Impl::restoreAlerts(Nanos now) {
  constexpr size_t kResolveBatch = 1000;
  size_t restored = 0, resolved = 0;
  // Streamed from the journal's rows, a row at a time; the resolves of a removed rule go to the
  // journal in batches, so 100,000 of them are not one vector of events.
  journal->forEachFiring([&](std::string_view key, std::string_view json) {
    std::string error;
    const auto e = alerts::parseAlertJson(json, &error);
    if (!e) {
      log::error("journal: a stored firing alert cannot be read ({}); dropped", error);
      journal->removeFiring(key);
      return;
    }
    // The engine points at the journal's copy of the series (as for readings), not a copy; past
    // max_series (evictable there) it keeps its own.
    const SeriesId id = journal->internSeries(e->series);
    if (id < cfg.limits.max_series ? alert_engine->restore(*e, journal->series(id), now)
                                   : alert_engine->restore(*e, now)) {
      ++restored;
      // The engine keys its events with the gateway id of now: a row stored under another key
      // (the id changed) moves, so that its resolve deletes it.
      if (auto current = alerts::dedupKey(cfg.gateway.id, e->rule, e->series); current != key) {
        journal->putFiring(current, json);
        journal->removeFiring(key);
      }
    } else {  // its rule is gone: close the incident rather than leave it open
      alert_events.push_back(alerts::resolvedFrom(*e, now));
      journal->removeFiring(key);
      ++resolved;
      if (alert_events.size() >= kResolveBatch) journalAlerts();
    }
  });
  if (!alert_events.empty()) journalAlerts();
  if (restored + resolved > 0)
    log::notice("alerts: {} firing alert(s) restored, {} resolved (rule removed)", restored,
                resolved);
}

void Pipeline::Impl::restoreWindows(Nanos now) {
  std::uint64_t from = 0;
  Nanos watermark = 0;
  std::optional<aggregators::Aggregator::WindowKey> partial;
  if (parseWindowsState(journal->state("windows").value_or(""), watermark, from, partial)) {
    windows->restoreWatermark(watermark);
    if (partial) windows->restorePartial(*partial);
    std::vector<ReadingRecord> batch;
    std::uint64_t after = from > 0 ? from - 1 : 0, replayed = 0;
    for (;;) {
      journal->read(after, 4096, batch);
      if (batch.empty()) break;
      for (const auto& r : batch) {
        if (r.kind != RecordKind::kReading) continue;
        const SeriesId id = journal->internSeries(r.series->toSeries());
        if (id < cfg.limits.max_series) windows->replay(id, r.event_time, r.value, r.seq);
        ++replayed;
      }
      after = batch.back().seq;
    }
    log::info("windows: watermark {}, replayed {} reading(s) from seq {} into open windows",
              formatRfc3339Millis(watermark), replayed, from);
  }
  windows->advanceWallTime(now);
  sliceWindows();
}

/// Arms the wall-time timer for the next window a silent series leaves open.
void Pipeline::Impl::armWindowTimer() {
  if (!windows || stopped) return;
  const auto due = windows->nextWallDeadline();
  if (!due || (window_timer_at && *window_timer_at <= *due)) return;
  window_timer_at = due;
  window_timer.expires_after(std::chrono::nanoseconds(std::max<Nanos>(0, *due - time.wall())));
  window_timer.async_wait([this,
                           a = std::weak_ptr<bool>(alive)](const boost::system::error_code& ec) {
    if (ec || a.expired() || stopped) return;
    window_timer_at.reset();
    loop_work.run(LoopWorkKind::kWindowDeadline, [this] { windows->advanceWallTime(time.wall()); });
    sliceWindows();
    armWindowTimer();
  });
}

void Pipeline::Impl::commitNow() {
  if (windows) journal->putState("windows", windowsState());
  std::uint64_t cursor_sum = 0;
  for (auto& f : forwarders) cursor_sum += f->cursor();
  for (auto& f : outboxes) cursor_sum += f->cursor();
  const std::uint64_t appended = appendedSeq();
  if (journal->pending() == 0 && cursor_sum == committed_cursor_sum) {
    // Bad input waits for nothing but what came before it (appended, once that is durable).
    if (sources_started)
      for (auto& s : sources) s->committed(std::min(appended, journal->durableSeq()));
    return;
  }
  const std::size_t rows = journal->pending();
  loop_work.run(
      LoopWorkKind::kCommit, [this] { commit_failing = !journal->commit(); },
      [rows] { return fmt::format("{} rows", rows); });
  if (commit_failing) {
    ++commit_failures;  // the journal logged why; rows and acks stay pending
    return;
  }
  committed_cursor_sum = cursor_sum;
  if (windows)
    journal->setCursor("windows", std::min(windows->replayFrom() - 1, journal->lastSeq()));
  // MQTT PUBACKs and CoAP 2.04s for everything now durable: with synchronous = full that is what
  // the journal's sync thread has covered (this commit is acknowledged by the onDurable() its
  // sync posts); otherwise this commit.
  onDurable();
  armWindowTimer();
  // A commit takes a bounded part (issue 13): the rest goes in a turn of its own, next.
  if (journal->pending() > 0)
    boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
      if (!a.expired() && !stopped && !commit_failing) commitNow();
    });
}

/// The sinks may send a record before it is durable (Journal::sendableSeq()): one poke of the
/// forwarders per turn of the loop, after every message of a socket read was appended (a post
/// from the loop's own thread queues without a syscall; a forwarder with a batch out returns at
/// once).
void Pipeline::Impl::pokeSoon() {
  if (poke_posted || forwarders.empty()) return;
  // Busy or paced forwarders poke themselves: no post, no extra epoll_wait (issue 16).
  if (std::none_of(forwarders.begin(), forwarders.end(),
                   [](const auto& f) { return f->wantsPoke(); }))
    return;
  poke_posted = true;
  boost::asio::post(io, [this, a = std::weak_ptr<bool>(alive)] {
    if (a.expired()) return;
    poke_posted = false;
    if (stopped) return;
    loop_work.run(LoopWorkKind::kSinks, [this] {
      for (auto& f : forwarders) f->poke();
    });
  });
}

/// Acknowledges and forwards up to the durable seq: after each commit, and when a sync of the
/// journal finished (posted by its sync thread).
void Pipeline::Impl::onDurable() {
  if (stopped) return;
  loop_work.run(LoopWorkKind::kDurable, [this] {
    const std::uint64_t durable = journal->durableSeq();
    if (sources_started)
      for (auto& s : sources) s->committed(durable);
    for (auto& f : forwarders) f->poke();
    for (auto& f : outboxes) f->poke();
  });
}

/// At each watch tick: what the journal's sync thread made durable since the last one.
void Pipeline::Impl::takeDurable() {
  if (durable_ready->exchange(false, std::memory_order_acq_rel)) onDurable();
}

void Pipeline::Impl::every(boost::asio::steady_timer& timer, Nanos interval,
                           std::function<void()> fn, Nanos due) {
  const Nanos now = steadyNow();
  if (interval > 0 && interval % kLoopGrid == 0) {
    // On the grid, from the last due time (a late run does not push the next one back), but
    // never in the past (a stall that passed several is not caught up).
    due = due > 0 ? due + interval : gridAfter(now + interval - kLoopGrid, kLoopGrid);
    if (due <= now) due = gridAfter(now, kLoopGrid);
  } else {
    due = now + interval;
  }
  timer.expires_at(steadyAt(due));
  timer.async_wait([this, &timer, interval, fn, due,
                    a = std::weak_ptr<bool>(alive)](const boost::system::error_code& ec) {
    if (ec || a.expired() || stopped) return;
    fn();
    every(timer, interval, fn, due);
  });
}

/// Measures how long the loop goes without turning: a 10 ms tick's lateness is a lower
/// bound of the longest stall (a handler that ran that long), kept since start and per 10 s.
/// A long one is logged with the named handler that ran longest since the previous check
/// (gateway/loop_work.h); none, or a much shorter one, means something unnamed held the loop
/// (a socket's read, a sink's delivery reports, a control request) or the CPU was elsewhere.
void Pipeline::Impl::watchLoop(Nanos late) {
  constexpr Nanos kBucket = 10 * kNanosPerSecond;
  constexpr Nanos kLogStall = 100 * kNanosPerMilli;
  const Nanos now = time.mono();
  const LoopWork work = loop_work.takeSinceCheck();
  // The thread's CPU clock is a system call (issue 16): read at every other tick and at a late
  // one, so a stall's CPU is counted from a reading at most two ticks before it (capped at the
  // stall's length below).
  Nanos cpu = 0, runq = 0;
  bool read_runq = false;
  if (watchReadsCpu(now, loop_cpu_last >= 0 ? loop_cpu_last_at : -1, late, kLoopGrid)) {
    const Nanos cpu_now = loop_work.cpuNow();
    cpu = loop_cpu_last >= 0 ? cpu_now - loop_cpu_last : 0;
    // The run-queue wait (a second system call) while the loop is busy — a quarter or more of
    // the time since the last reading on the CPU — or late: a stall in a busy stretch is
    // counted from a reading at most two ticks before it, as its CPU time; one out of an idle
    // stretch from the last busy one (more than its own wait: capped below).
    read_runq = late >= kNanosPerMilli || (loop_cpu_last >= 0 && 4 * cpu >= now - loop_cpu_last_at);
    loop_cpu_last = cpu_now;
    loop_cpu_last_at = now;
  }
  if (read_runq) {
    const Nanos runq_now = loop_runq_clock.read();
    runq = loop_runq_last >= 0 && runq_now >= 0 ? runq_now - loop_runq_last : 0;
    loop_runq_last = runq_now;
  }
  loop_stall_max = std::max(loop_stall_max, late);
  loop_stall_bucket = std::max(loop_stall_bucket, late);
  const Nanos late_cpu = std::min(late, cpu);  // of the lateness, at most what ran
  loop_cpu_max = std::max(loop_cpu_max, late_cpu);
  loop_cpu_bucket = std::max(loop_cpu_bucket, late_cpu);
  // Of the lateness off the CPU, at most what was spent waiting for one; the rest of it was
  // blocked (a lock, the disk, a page fault).
  const Nanos late_runq = std::min(late - late_cpu, runq);
  loop_runq_max = std::max(loop_runq_max, late_runq);
  loop_runq_bucket = std::max(loop_runq_bucket, late_runq);
  std::uint64_t suppressed = 0;
  if (late >= kLogStall && stall_log.allow(now, suppressed)) {
    const auto ms = [](Nanos t) { return static_cast<double>(t) / kNanosPerMilli; };
    const std::string more = suppressed ? fmt::format(" ({} more stalls over {:.0f} ms not logged)",
                                                      suppressed, ms(kLogStall))
                                        : "";
    const std::string cpu_of =
        work.cpu >= 0 ? fmt::format(", {:.1f} ms of it on the CPU", ms(work.cpu)) : "";
    const std::string split =
        fmt::format("{:.1f} ms on the CPU, {:.1f} ms waiting for one", ms(late_cpu), ms(late_runq));
    if (work.took >= late / 2)
      log::warn("event loop held {:.0f} ms ({}) by {} ({:.1f} ms{}{}{}){}", ms(late), split,
                work.name, ms(work.took), cpu_of, work.detail.empty() ? "" : ", ", work.detail,
                more);
    else
      log::warn(
          "event loop held {:.0f} ms ({}); the longest named work in that time: {} ({:.1f} "
          "ms): the rest was sockets, sinks or control requests, or waiting for a CPU or the "
          "disk{}",
          ms(late), split, work.took > 0 ? work.name : std::string_view("none"), ms(work.took),
          more);
  }
  if (now - loop_bucket_start >= kBucket) {
    loop_stall_previous = loop_stall_bucket;
    loop_stall_bucket = 0;
    loop_cpu_previous = loop_cpu_bucket;
    loop_cpu_bucket = 0;
    loop_runq_previous = loop_runq_bucket;
    loop_runq_bucket = 0;
    loop_bucket_start = now;
    loop_work.rotate();
  }
}

Pipeline::Pipeline(boost::asio::io_context& io, const config::Config& config, Clock clock)
    : impl_(std::make_unique<Impl>(io, config, std::move(clock))) {}
Pipeline::~Pipeline() { impl_->stop(); }
void Pipeline::start() { impl_->start(); }
void Pipeline::stop() { impl_->stop(); }
StatusSnapshot Pipeline::snapshot(StatusParts what) const { return impl_->snapshot(what); }
StatusSnapshot Pipeline::snapshot(StatusParts what, const DeviceQuery& devices) const {
  return impl_->snapshot(what, &devices);
}
void Pipeline::snapshot(StatusParts what, DeviceQuery devices,
                        std::function<void(StatusSnapshot)> done) const {
  impl_->snapshotInSlices(what, std::move(devices), std::move(done));
}
void Pipeline::sampleRates() const { impl_->sampleRates(impl_->time.mono()); }
std::string Pipeline::statusLine() const {
  using namespace status_part;
  return gw::statusLine(impl_->snapshot(kCounters | kSources | kSinks));
}

}  // namespace gw
