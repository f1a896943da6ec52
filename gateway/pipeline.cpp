#include "gateway/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <map>
#include <unordered_map>
#include <vector>

#include "aggregators/aggregator.h"
#include "alerts/alert_engine.h"
#include "alerts/outbox_sink.h"
#include "buffer/journal.h"
#include "core/json.h"
#include "core/log.h"
#include "gateway/clock_skew.h"
#include "gateway/forwarder.h"
#include "protocols/mqtt/topic_template.h"

namespace gw {
namespace {

struct Route {
  config::SubscribeConfig config;
  mqtt::TopicTemplate tmpl;
  payload::Decoder decoder;
};

}  // namespace

struct Pipeline::Impl {
  Impl(boost::asio::io_context& io_, const config::Config& cfg_)
      : io(io_), cfg(cfg_), commit_timer(io_), retention_timer(io_), stats_timer(io_) {
    buffer::JournalOptions jo;
    jo.path = cfg.gateway.state_dir / "journal.db";
    jo.max_size_bytes = cfg.buffer.max_size;
    jo.max_age = cfg.buffer.max_age;
    jo.synchronous_full = cfg.buffer.synchronous_full;
    if (cfg.kafka) jo.sinks.push_back("kafka");
    // The windows' replay point: readings of open windows stay until their window is out.
    if (cfg.aggregate.enabled) jo.sinks.push_back("windows");
    for (const auto& name : cfg.notify.names()) jo.sinks.push_back("notify." + name);
    if (cfg.timeseries) jo.sinks.push_back("timeseries");
    journal = buffer::Journal::open(jo);

    for (const auto& sc : cfg.mqtt.subscriptions) {
      std::string error;
      auto tmpl = mqtt::TopicTemplate::parse(sc.template_text, error);
      routes.push_back(Route{sc, std::move(*tmpl), payload::Decoder(sc.decoder)});
    }
    if (cfg.kafka) {
      forwarders.push_back(std::make_unique<Forwarder>(
          io, *journal, kafka::makeKafkaSink(cfg.kafka->options), cfg.kafka->forward));
    }
    if (cfg.timeseries) {
      forwarders.push_back(std::make_unique<Forwarder>(
          io, *journal, timeseries::makeTimeseriesSink(cfg.timeseries->options),
          cfg.timeseries->forward));
    }
    if (forwarders.empty())
      log::warn(
          "no sink configured ([kafka] or [timeseries]): readings only accumulate in the journal");
    if (cfg.aggregate.enabled) {
      windows = aggregators::Aggregator::create(
          cfg.aggregate.windows, [this](const aggregators::Aggregate& a) { onWindowClosed(a); });
    }
    if (!cfg.alerts.empty()) {
      alerts::EngineOptions eo;
      eo.gateway_id = cfg.gateway.id;
      alert_engine = std::make_unique<alerts::AlertEngine>(cfg.alerts, eo);
    }
    // One outbox forwarder per notifier: one event at a time, in order, retried with backoff
    // (and Retry-After) until delivered; a 400 is skipped and kept as the last error.
    ForwarderOptions outbox;
    outbox.batch = 1;
    outbox.alerts_only = true;
    outbox.retry_min = cfg.notify.retry.initial;
    outbox.retry_max = cfg.notify.retry.max;
    if (cfg.notify.pagerduty)
      outboxes.push_back(std::make_unique<Forwarder>(
          io, *journal,
          alerts::makeOutboxSink(alerts::makePagerDutyNotifier(*cfg.notify.pagerduty)), outbox));
    for (const auto& w : cfg.notify.webhooks)
      outboxes.push_back(std::make_unique<Forwarder>(
          io, *journal, alerts::makeOutboxSink(alerts::makeWebhookNotifier(w)), outbox));
    if (cfg.coap) {  // binds its endpoints here, so a busy port stops start-up cleanly
      coap::Handlers h;
      h.reading = [this](Series& s, const payload::Decoded& d, Nanos receive_time) {
        ingest(s, d, receive_time, TimeReference::kReceive);
      };
      h.bad = [this](std::string_view reason, std::string_view where, size_t size) {
        countBad(reason, where, size);
      };
      h.busy = [this] { return backpressure(); };
      coap = coap::Source::create(io, cfg.coap->source, std::move(h));
    }
  }

  boost::asio::io_context& io;
  config::Config cfg;
  std::unique_ptr<buffer::Journal> journal;
  std::vector<Route> routes;
  std::vector<std::unique_ptr<Forwarder>> forwarders;
  std::vector<std::unique_ptr<Forwarder>> outboxes;  // alert notifiers
  std::unique_ptr<aggregators::Aggregator> windows;
  std::unique_ptr<alerts::AlertEngine> alert_engine;
  std::vector<alerts::AlertEvent> alert_events;  // scratch
  std::vector<alerts::Statistic> window_stats;   // scratch
  boost::asio::steady_timer window_timer{io}, alert_timer{io};
  std::optional<Nanos> window_timer_at;  // the deadline window_timer is armed for
  std::uint64_t aggregates = 0, alert_count = 0;
  std::unique_ptr<mqtt::Client> client;
  std::unique_ptr<coap::Source> coap;
  boost::asio::steady_timer commit_timer, retention_timer, stats_timer;
  std::vector<mqtt::AckToken> pending_acks;
  std::uint64_t committed_cursor_sum = 0;
  bool stopped = false;

  // Counters.
  std::uint64_t messages = 0, readings = 0, bad_timestamps = 0, commit_failures = 0;
  std::map<std::string, std::uint64_t, std::less<>> bad;
  log::RateLimiter bad_log;

  // Clock-skew estimators: one per device, one for the gateway's own clock vs the broker's.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const noexcept {
      return std::hash<std::string_view>{}(v);
    }
  };
  std::unordered_map<std::string, clock::SkewEstimator, StringHash, std::equal_to<>> clocks;
  clock::SkewEstimator gateway_clock{clockOptions()};

  clock::ClockOptions clockOptions() const {
    return {cfg.clock.max_skew, cfg.clock.step, cfg.clock.tolerance};
  }

  clock::SkewEstimator& clockFor(const std::string& device) {
    auto it = clocks.find(std::string_view(device));
    if (it == clocks.end()) it = clocks.emplace(device, clock::SkewEstimator(clockOptions())).first;
    return it->second;
  }

  // Scratch reused for every message (no allocation in the steady state).
  Series series;
  payload::Decoded decoded;

  void start() {
    if (!cfg.mqtt.uri.empty()) {  // [mqtt] is optional on a CoAP-only gateway
      client = mqtt::Client::create(
          io, cfg.mqtt.client,
          [this](const mqtt::Message& m, mqtt::AckToken t) { onMessage(m, t); },
          [this](bool up, const std::string& reason) {
            if (up)
              log::notice("mqtt: connected to {} as {}", cfg.mqtt.uri, cfg.mqtt.client.client_id);
            else
              log::warn("mqtt: disconnected from {}: {}", cfg.mqtt.uri, reason);
          });
      restoreState();
      commitNow();
      client->start();
    }
    if (coap) coap->start();
    for (auto& f : forwarders) f->poke();  // backlog left from before a restart
    for (auto& f : outboxes) f->poke();
    scheduleCommit();
    scheduleRetention();
    if (alert_engine)
      every(alert_timer, kNanosPerSecond, [this] {
        alert_engine->tick(wallNow(), alert_events);
        if (!alert_events.empty()) journalAlerts();
      });
    scheduleStats();
    log::notice("gatewayd {}: journal {} (last seq {}), {} subscription(s), sinks: {}",
                cfg.gateway.id, (cfg.gateway.state_dir / "journal.db").string(),
                journal->stats().last_seq, routes.size(), sinkNames());
  }

  std::string sinkNames() const {
    std::string s;
    for (auto& f : forwarders) s += (s.empty() ? "" : ", ") + f->name();
    return s.empty() ? "none" : s;
  }

  void countBad(std::string_view reason, std::string_view topic, size_t size) {
    auto it = bad.find(reason);
    if (it == bad.end()) it = bad.emplace(std::string(reason), 0).first;
    ++it->second;
    std::uint64_t suppressed = 0;
    if (bad_log.allow(monoNow(), suppressed))
      log::warn("bad input ({}) on topic '{}' ({} bytes); {} more bad messages not logged", reason,
                topic.substr(0, 200), size, suppressed);
  }

  void onMessage(const mqtt::Message& m, mqtt::AckToken token) {
    ++messages;
    if (backpressure()) {
      // The journal cannot commit (disk failure, lock): memory stays bounded. A QoS 1 message
      // is left unacknowledged, so the broker keeps it and redelivers it on the next
      // connection; a QoS 0 message is lost. Either way it is counted and logged.
      return countBad(m.qos > 0 ? "journal_backpressure" : "journal_backpressure_qos0_lost",
                      m.topic, m.payload.size());
    }
    // Bad messages are acknowledged too (after the next commit): redelivering them would not
    // make them good, and they are counted and logged.
    pending_acks.push_back(token);
    Route* route = nullptr;
    for (auto& r : routes) {
      if (mqtt::topicMatchesFilter(r.config.topic, m.topic) && r.tmpl.match(m.topic, series)) {
        route = &r;
        break;
      }
    }
    if (!route) return countBad("no_template", m.topic, m.payload.size());
    const auto err = route->decoder.decode(m.payload, decoded);
    if (err != payload::DecodeError::kNone)
      return countBad(payload::toString(err), m.topic, m.payload.size());
    if (decoded.bad_timestamp) {
      ++bad_timestamps;
      countBad("bad_timestamp", m.topic, m.payload.size());
    }

    Nanos reference_time = m.receive_time;
    TimeReference reference = TimeReference::kReceive;
    if (cfg.clock.broker_reference && m.user_properties) {
      for (const auto& [name, value] : *m.user_properties) {
        if (name != cfg.clock.broker_property) continue;
        if (auto t = clock::parseBrokerStamp(value, m.receive_time)) {
          reference_time = *t;
          reference = TimeReference::kBroker;
          // The gateway's own clock against the broker's: receive − stamp = delay + skew.
          gateway_clock.observe(*t, m.receive_time, TimeReference::kReceive);
        } else {
          countBad("bad_broker_stamp", m.topic, m.payload.size());
        }
        break;
      }
    }
    ingest(series, decoded, reference_time, reference);
  }

  /// The part of every source after decoding (MQTT, CoAP): clock stage, journal, windows,
  /// alerts. `series` holds the device, tags and (for single-value formats) the metric; it is
  /// scratch and may be changed. Commits when a batch is full.
  void ingest(Series& series, const payload::Decoded& decoded, Nanos reference_time,
              TimeReference reference) {
    // Clock stage: the device's time corrected by its estimated offset; without a device
    // time, the reference itself.
    Nanos event_time = reference_time;
    if (decoded.device_time) {
      event_time = clockFor(series.device)
                       .observe(*decoded.device_time, reference_time, reference)
                       .event_time;
    }
    for (const auto& v : decoded.values) {
      if (!v.metric.empty()) series.metric.assign(v.metric);
      const SeriesId id = journal->internSeries(series);
      const std::uint64_t seq =
          journal->append(id, v.value, event_time, decoded.device_time, reference);
      ++readings;
      if (windows) windows->add(id, event_time, v.value, seq);
      if (alert_engine) {
        alert_engine->onReading(series, v.value, event_time, wallNow(), alert_events);
        if (!alert_events.empty()) journalAlerts();
      }
    }
    if (journal->pending() >= cfg.buffer.batch) commitNow();
  }

  /// True when a source must hold back: the journal cannot commit and memory is at its bound.
  bool backpressure() const { return journal->pending() >= maxPending(); }

  /// Rows held in memory while commits fail, at most.
  size_t maxPending() const { return std::max<size_t>(cfg.buffer.batch * 20, 20000); }

  /// A closed window (from inside the aggregator): an aggregate record, and the rules on it.
  void onWindowClosed(const aggregators::Aggregate& a) {
    journal->appendAggregate(a.series, a);
    ++aggregates;
    // Rules on a window statistic look at the first configured window size.
    if (!alert_engine || a.size != cfg.aggregate.windows.sizes.front()) return;
    window_stats.clear();
    for (Stat st : kStatOrder)
      if (has(a.stats, st)) window_stats.push_back({toString(st), a.get(st)});
    alert_engine->onWindow(journal->series(a.series), a.start, a.end(), window_stats, wallNow(),
                           alert_events);
    if (!alert_events.empty()) journalAlerts();
  }

  /// Alert events into the outbox (journal), and the set of firing alerts into the journal's
  /// state, both with the next commit.
  void journalAlerts() {
    std::string json;
    for (const auto& e : alert_events) {
      json.clear();
      alerts::appendOutboxJson(json, e);
      journal->appendAlert(journal->internSeries(e.series), e.time, e.value, json);
      ++alert_count;
      log::notice("alert {}", alerts::summary(e));
    }
    alert_events.clear();
    std::string firing;
    for (const auto& e : alert_engine->firing()) {
      alerts::appendOutboxJson(firing, e);
      firing += '\n';
    }
    journal->putState("alerts.firing", std::move(firing));
  }

  /// Brings the windows and alert states back after a restart (design: "a window open at a
  /// restart is completed from the journal"; an alert firing before it stays firing).
  void restoreState() {
    const Nanos now = wallNow();
    if (alert_engine) {
      size_t restored = 0, resolved = 0;
      const std::string firing = journal->state("alerts.firing").value_or("");
      for (size_t pos = 0; pos < firing.size();) {
        size_t end = firing.find('\n', pos);
        if (end == std::string::npos) end = firing.size();
        std::string error;
        if (auto e =
                alerts::parseAlertJson(std::string_view(firing).substr(pos, end - pos), &error)) {
          if (alert_engine->restore(*e, now)) {
            ++restored;
          } else {  // its rule is gone: close the incident rather than leave it open
            alert_events.push_back(alerts::resolvedFrom(*e, now));
            ++resolved;
          }
        } else {
          log::error("journal: a stored firing alert cannot be read ({}); dropped", error);
        }
        pos = end + 1;
      }
      if (!alert_events.empty()) journalAlerts();
      if (restored + resolved > 0)
        log::notice("alerts: {} firing alert(s) restored, {} resolved (rule removed)", restored,
                    resolved);
    }
    if (windows) {
      std::uint64_t from = 0;
      Nanos watermark = 0;
      const std::string st = journal->state("windows").value_or("");
      // "<watermark ns> <replay-from seq>" (from_chars: exact int64 on 32-bit targets too)
      const char* end = st.data() + st.size();
      const auto w = std::from_chars(st.data(), end, watermark);
      const auto f = w.ec == std::errc() && w.ptr != end
                         ? std::from_chars(w.ptr + 1, end, from)
                         : std::from_chars_result{w.ptr, std::errc::invalid_argument};
      if (f.ec == std::errc() && f.ptr == end) {
        windows->restoreWatermark(watermark);
        std::vector<ReadingRecord> batch;
        std::uint64_t after = from > 0 ? from - 1 : 0, replayed = 0;
        for (;;) {
          journal->read(after, 4096, batch);
          if (batch.empty()) break;
          for (const auto& r : batch) {
            if (r.kind != RecordKind::kReading) continue;
            windows->replay(journal->internSeries(*r.series), r.event_time, r.value, r.seq);
            ++replayed;
          }
          after = batch.back().seq;
        }
        log::info("windows: watermark {}, replayed {} reading(s) from seq {} into open windows",
                  formatRfc3339Millis(watermark), replayed, from);
      }
      windows->advanceWallTime(now);
    }
  }

  /// Arms the wall-time timer for the next window a silent series leaves open.
  void armWindowTimer() {
    if (!windows || stopped) return;
    const auto due = windows->nextWallDeadline();
    if (!due || (window_timer_at && *window_timer_at <= *due)) return;
    window_timer_at = due;
    window_timer.expires_after(std::chrono::nanoseconds(std::max<Nanos>(0, *due - wallNow())));
    window_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopped) return;
      window_timer_at.reset();
      windows->advanceWallTime(wallNow());
      armWindowTimer();
    });
  }

  void commitNow() {
    if (windows) {
      journal->putState("windows",
                        fmt::format("{} {}", windows->watermark(), windows->replayFrom()));
    }
    std::uint64_t cursor_sum = 0;
    for (auto& f : forwarders) cursor_sum += f->cursor();
    for (auto& f : outboxes) cursor_sum += f->cursor();
    if (journal->pending() == 0 && pending_acks.empty() && cursor_sum == committed_cursor_sum)
      return;
    if (!journal->commit()) {
      ++commit_failures;  // the journal logged why; rows and acks stay pending
      return;
    }
    committed_cursor_sum = cursor_sum;
    if (windows)
      journal->setCursor("windows", std::min(windows->replayFrom() - 1, journal->lastSeq()));
    for (const auto& t : pending_acks) client->ack(t);
    if (coap) coap->committed();  // confirmable CoAP requests get their 2.04 now
    pending_acks.clear();
    for (auto& f : forwarders) f->poke();
    for (auto& f : outboxes) f->poke();
    armWindowTimer();
  }

  template <typename F>
  void every(boost::asio::steady_timer& timer, Nanos interval, F fn) {
    timer.expires_after(std::chrono::nanoseconds(interval));
    timer.async_wait([this, &timer, interval, fn](const boost::system::error_code& ec) {
      if (ec || stopped) return;
      fn();
      every(timer, interval, fn);
    });
  }

  void scheduleCommit() {
    every(commit_timer, cfg.buffer.commit_interval, [this] { commitNow(); });
  }
  void scheduleRetention() {
    every(retention_timer, kNanosPerSecond, [this] { journal->enforceRetention(wallNow()); });
  }
  void scheduleStats() {
    every(stats_timer, cfg.gateway.stats_interval, [this] { log::info("stats {}", statsJson()); });
  }

  std::string statsJson() const {
    std::string s = fmt::format(R"({{"messages":{},"readings":{},"bad":{{)", messages, readings);
    bool first = true;
    for (const auto& [reason, n] : bad) {
      s += first ? "" : ",";
      first = false;
      json::appendString(s, reason);
      s += fmt::format(":{}", n);
    }
    const auto js = journal->stats();
    s += fmt::format(
        R"(}},"journal":{{"last_seq":{},"rows":{},"bytes":{},"commits":{},"commit_failures":{}}},)",
        js.last_seq, js.rows, js.file_bytes, js.commits, commit_failures);
    if (windows) {
      const auto ws = windows->stats();
      s += fmt::format(
          R"("windows":{{"open":{},"closed":{},"late":{},"series":{},"sketch_windows":{},"memory_bytes":{},"aggregates":{}}},)",
          ws.open_windows, ws.windows_closed, ws.late, ws.series, ws.sketch_windows,
          windows->memoryBytes(), aggregates);
    }
    if (alert_engine) {
      const auto c = alert_engine->counters();
      s += fmt::format(
          R"("alerts":{{"events":{},"triggers":{},"resolves":{},"firing":{},"pending":{},"held":{},"suppressed":{},"delayed":{}}},)",
          alert_count, c.triggers, c.resolves, c.firing, c.pending, c.held, c.suppressed,
          c.delayed);
    }
    if (!outboxes.empty()) {
      s += R"("notifiers":{)";
      bool first_n = true;
      for (const auto& f : outboxes) {
        const auto st = f->status();
        s += first_n ? "" : ",";
        first_n = false;
        json::appendString(s, st.name);
        s += fmt::format(R"(:{{"up":{},"delivered":{},"retries":{},"rejected":{},"last_error":)",
                         st.up, st.sent, st.retries, st.rejected);
        json::appendString(s, st.last_error);
        s += "}";
      }
      s += "},";
    }
    std::uint64_t flagged = 0, steps = 0;
    for (const auto& [device, estimator] : clocks) {
      flagged += estimator.state().out_of_bounds;
      steps += estimator.state().steps;
    }
    s += fmt::format(
        R"("clock":{{"devices":{},"out_of_bounds":{},"steps":{},"gateway_offset_ms":{:.3f}}},)",
        clocks.size(), flagged, steps,
        static_cast<double>(gateway_clock.state().offset) / kNanosPerMilli);
    const auto ms = client ? client->status() : mqtt::ClientStatus{};
    if (coap) s += R"("coap":)" + coap->statsJson() + ",";
    s += fmt::format(R"("mqtt":{{"connected":{},"in_flight":{},"pending_acks":{}}},"sinks":{{)",
                     ms.connected, ms.in_flight, pending_acks.size());
    first = true;
    for (const auto& f : forwarders) {
      const auto st = f->status();
      const auto it = js.sinks.find(st.name);
      const std::uint64_t backlog = it != js.sinks.end() ? it->second.backlog : 0;
      const std::uint64_t dropped = it != js.sinks.end() ? it->second.dropped : 0;
      s += first ? "" : ",";
      first = false;
      json::appendString(s, st.name);
      s += fmt::format(
          R"(:{{"up":{},"sent":{},"backlog":{},"retries":{},"rejected":{},"dropped":{},"age_p50_ms":{:.1f},"age_p99_ms":{:.1f},"last_error":)",
          st.up, st.sent, backlog, st.retries, st.rejected, dropped, st.age_p50_ms, st.age_p99_ms);
      json::appendString(s, st.last_error);
      s += "}";
    }
    s += "}}";
    return s;
  }

  std::string statusLine() const {
    const auto ms = client ? client->status() : mqtt::ClientStatus{};
    std::string s = client ? fmt::format("mqtt {}, {} readings",
                                         ms.connected ? "connected" : "disconnected", readings)
                           : fmt::format("{} readings", readings);
    const auto js = journal->stats();
    for (const auto& f : forwarders) {
      const auto st = f->status();
      const auto it = js.sinks.find(st.name);
      s += fmt::format(", {} {} backlog {}", st.name, st.up ? "up" : "down",
                       it != js.sinks.end() ? it->second.backlog : 0);
    }
    return s;
  }

  static void appendClock(std::string& s, const clock::DeviceClock& c) {
    s += fmt::format(
        R"("offset_ms":{:.3f},"drift_ppm":{:.2f},"samples":{},"steps":{},"last_step":)",
        static_cast<double>(c.offset) / kNanosPerMilli, c.drift_ppm, c.samples, c.steps);
    if (c.last_step) {
      s += '"';
      appendRfc3339Millis(s, *c.last_step);
      s += '"';
    } else {
      s += "null";
    }
    s += fmt::format(R"(,"converged":{},"out_of_bounds":{},"last_seen":")", c.converged,
                     c.out_of_bounds);
    appendRfc3339Millis(s, c.last_seen);
    s += '"';
  }

  std::string sensorsJson() const {
    std::string s = R"({"gateway":{)";
    appendClock(s, gateway_clock.state());
    s += R"(},"devices":[)";
    bool first = true;
    for (const auto& [device, estimator] : clocks) {
      s += first ? "{" : ",{";
      first = false;
      s += R"("device":)";
      json::appendString(s, device);
      s += R"(,"reference":")";
      s += toString(estimator.state().reference);
      s += "\",";
      appendClock(s, estimator.state());
      s += '}';
    }
    s += "]}";
    return s;
  }

  void stop() {
    if (stopped) return;
    commitNow();
    stopped = true;
    commit_timer.cancel();
    retention_timer.cancel();
    stats_timer.cancel();
    window_timer.cancel();
    alert_timer.cancel();
    if (client) client->stop();
    if (coap) coap->stop();
    for (auto& f : forwarders) f->stop();
    for (auto& f : outboxes) f->stop();
    journal->commit();  // the last cursor moves
    log::info("stats {}", statsJson());
  }

  // --- control socket views (issue 6) ---
  // What `gatewayctl` and the metrics endpoint show, as JSON (see Pipeline::control). Rates
  // come from snapshots of the counters taken when a view is asked for (gatewayd asks every
  // few seconds for STATUS=), at most one a second, kept for 30 s: a rate is the average over
  // the last 1..15 s, or null right after start.
  struct ControlSnapshot {
    Nanos mono = 0;
    std::uint64_t readings = 0;
    std::map<std::string, std::uint64_t, std::less<>> sent;  // per sink
    std::unordered_map<std::string, std::uint64_t> device_samples;
  };
  mutable std::vector<ControlSnapshot> control_snapshots;
  Nanos control_since = wallNow();

  void controlSample(Nanos now) const {
    if (!control_snapshots.empty() && now - control_snapshots.back().mono < kNanosPerSecond) return;
    ControlSnapshot snap;
    snap.mono = now;
    snap.readings = readings;
    for (const auto& f : forwarders) snap.sent[f->name()] = f->status().sent;
    for (const auto& [device, estimator] : clocks)
      snap.device_samples[device] = estimator.state().samples;
    control_snapshots.push_back(std::move(snap));
    while (now - control_snapshots.front().mono > 30 * kNanosPerSecond)
      control_snapshots.erase(control_snapshots.begin());
  }

  /// The snapshot to measure rates against: the oldest of the last 15 s that is at least 1 s
  /// old, or nullptr.
  const ControlSnapshot* controlBase(Nanos now) const {
    for (const auto& snap : control_snapshots)
      if (now - snap.mono <= 15 * kNanosPerSecond && now - snap.mono >= kNanosPerSecond)
        return &snap;
    return nullptr;
  }

  static void appendRate(std::string& s, const ControlSnapshot* base, Nanos now,
                         std::uint64_t current, std::uint64_t before) {
    if (!base || current < before) {
      s += "null";
      return;
    }
    const double seconds = static_cast<double>(now - base->mono) / kNanosPerSecond;
    s += fmt::format("{:.2f}", static_cast<double>(current - before) / seconds);
  }

  static void appendTimeOrNull(std::string& s, std::optional<Nanos> t) {
    if (!t) {
      s += "null";
      return;
    }
    s += '"';
    appendRfc3339Millis(s, *t);
    s += '"';
  }

  /// `"oldest_unsent":<time|null>,"oldest_unsent_age_s":<seconds|null>`.
  static void appendOldestUnsent(std::string& s, std::optional<Nanos> oldest, Nanos wall) {
    s += R"("oldest_unsent":)";
    appendTimeOrNull(s, oldest);
    s += R"(,"oldest_unsent_age_s":)";
    if (oldest)
      s += fmt::format("{:.3f}",
                       static_cast<double>(std::max<Nanos>(0, wall - *oldest)) / kNanosPerSecond);
    else
      s += "null";
  }

  /// A URL without user:password@ (never show a secret).
  static std::string controlRedactUrl(std::string_view url) {
    const auto scheme = url.find("://");
    const auto start = scheme == std::string_view::npos ? 0 : scheme + 3;
    const auto at = url.find('@', start);
    const auto slash = url.find('/', start);
    if (at == std::string_view::npos || (slash != std::string_view::npos && at > slash))
      return std::string(url);
    return std::string(url.substr(0, start)) + std::string(url.substr(at + 1));
  }

  std::string controlSinkTarget(std::string_view name) const {
    if (name == "kafka" && cfg.kafka) return cfg.kafka->options.brokers;
    if (name == "timeseries" && cfg.timeseries)
      return controlRedactUrl(cfg.timeseries->options.url);
    return "";
  }

  void appendControlSinks(std::string& s, const buffer::JournalStats& js, Nanos wall, Nanos mono,
                          const ControlSnapshot* base) const {
    s += '[';
    bool first = true;
    for (const auto& f : forwarders) {
      const auto st = f->status();
      const auto it = js.sinks.find(st.name);
      const buffer::SinkBacklog b = it != js.sinks.end() ? it->second : buffer::SinkBacklog{};
      s += first ? "{" : ",{";
      first = false;
      s += R"("name":)";
      json::appendString(s, st.name);
      s += R"(,"target":)";
      json::appendString(s, controlSinkTarget(st.name));
      s += fmt::format(
          R"(,"up":{},"sent":{},"retries":{},"rejected":{},"cursor":{},"backlog":{},"dropped":{},)"
          R"("age_p50_ms":{:.1f},"age_p99_ms":{:.1f},)",
          st.up, st.sent, st.retries, st.rejected, b.cursor, b.backlog, b.dropped, st.age_p50_ms,
          st.age_p99_ms);
      appendOldestUnsent(s, b.oldest_unsent, wall);
      s += R"(,"rate_out":)";
      std::uint64_t before = 0;
      if (base) {
        const auto sit = base->sent.find(st.name);
        if (sit != base->sent.end()) before = sit->second;
      }
      appendRate(s, base && base->sent.count(st.name) ? base : nullptr, mono, st.sent, before);
      s += R"(,"last_error":)";
      json::appendString(s, st.last_error);
      s += '}';
    }
    s += ']';
  }

  void appendControlJournal(std::string& s, const buffer::JournalStats& js, Nanos wall) const {
    // Backlog, drops and age over the uplinks (forwarders), not over in-process consumers of
    // the journal such as the windows.
    std::uint64_t backlog = 0, dropped = 0;
    std::optional<Nanos> oldest;
    for (const auto& [name, b] : js.sinks) {
      if (std::none_of(forwarders.begin(), forwarders.end(),
                       [&, &name = name](const auto& f) { return f->name() == name; }))
        continue;
      backlog = std::max(backlog, b.backlog);
      dropped += b.dropped;
      if (b.oldest_unsent && (!oldest || *b.oldest_unsent < *oldest)) oldest = b.oldest_unsent;
    }
    s += R"({"path":)";
    json::appendString(s, (cfg.gateway.state_dir / "journal.db").string());
    s +=
        fmt::format(R"(,"last_seq":{},"rows":{},"file_bytes":{},"used_bytes":{},"max_size":{},)"
                    R"("max_age_s":{},"commits":{},"commit_failures":{},"pending":{},"backlog":{},)"
                    R"("dropped":{},)",
                    js.last_seq, js.rows, js.file_bytes, js.used_bytes, cfg.buffer.max_size,
                    cfg.buffer.max_age / kNanosPerSecond, js.commits, commit_failures,
                    journal->pending(), backlog, dropped);
    appendOldestUnsent(s, oldest, wall);
    s += R"(,"moved_aside":)";
    if (js.moved_aside)
      json::appendString(s, js.moved_aside->string());
    else
      s += "null";
    s += '}';
  }

  std::string controlStatus() const {
    const Nanos wall = wallNow(), mono = monoNow();
    const ControlSnapshot* base = controlBase(mono);
    std::string s = R"({"gateway":)";
    json::appendString(s, cfg.gateway.id);
    s += R"(,"since":)";
    appendTimeOrNull(s, control_since);
    std::uint64_t bad_total = 0;
    for (const auto& [reason, n] : bad) bad_total += n;
    s += fmt::format(R"(,"messages":{},"readings":{},"rate_in":)", messages, readings);
    appendRate(s, base, mono, readings, base ? base->readings : 0);
    s += fmt::format(R"(,"bad_total":{},"bad":{{)", bad_total);
    bool first = true;
    for (const auto& [reason, n] : bad) {
      s += first ? "" : ",";
      first = false;
      json::appendString(s, reason);
      s += fmt::format(":{}", n);
    }
    const auto ms = client ? client->status() : mqtt::ClientStatus{};
    s += R"(},"sources":[)";
    if (client) {
      s += R"({"name":"mqtt","target":)";
      json::appendString(s, cfg.mqtt.uri);
      s += fmt::format(
          R"(,"up":{},"connects":{},"connection_failures":{},"session_present":{},"in_flight":{},)"
          R"("pending_acks":{},"last_error":)",
          ms.connected, ms.connects, ms.connection_failures, ms.session_present, ms.in_flight,
          pending_acks.size());
      json::appendString(s, ms.last_error);
      s += R"(,"last_error_time":)";
      appendTimeOrNull(
          s, ms.last_error_time ? std::optional<Nanos>(ms.last_error_time) : std::nullopt);
      s += '}';
    }
    if (coap) {
      // Up while it serves; an observation not registered with its device is its error.
      const auto cs = coap->status();
      const auto& o = cfg.coap->source;
      std::string target;
      if (o.listen) target = fmt::format("coap://{}:{}", o.listen_at.host, o.listen_at.port);
      if (!o.observe.empty())
        target += fmt::format("{}{} observed", target.empty() ? "" : ", ", cs.observations);
      s += client ? R"(,{"name":"coap","target":)" : R"({"name":"coap","target":)";
      json::appendString(s, target);
      s += fmt::format(
          R"(,"up":true,"requests":{},"notifications":{},"observing":{},"observations":{},)"
          R"("reregistrations":{},"last_error":)",
          cs.requests, cs.notifications, cs.observing, cs.observations, cs.reregistrations);
      json::appendString(
          s, cs.observing < cs.observations
                 ? fmt::format("observing {} of {} resources", cs.observing, cs.observations)
                 : std::string());
      s += R"(,"last_error_time":null})";
    }
    s += R"(],"sinks":)";
    const auto js = journal->stats();
    appendControlSinks(s, js, wall, mono, base);
    s += R"(,"journal":)";
    appendControlJournal(s, js, wall);
    std::uint64_t flagged = 0;
    for (const auto& [device, estimator] : clocks) flagged += estimator.state().out_of_bounds;
    s += fmt::format(R"(,"clock":{{"devices":{},"out_of_bounds":{},"gateway_offset_ms":{:.3f}}}}})",
                     clocks.size(), flagged,
                     static_cast<double>(gateway_clock.state().offset) / kNanosPerMilli);
    return s;
  }

  std::string controlSensors() const {
    const Nanos mono = monoNow();
    std::string s = R"({"gateway":{)";
    appendClock(s, gateway_clock.state());
    s += fmt::format(R"(}},"max_skew_ms":{:.3f},"devices":[)",
                     static_cast<double>(cfg.clock.max_skew) / kNanosPerMilli);
    // Sorted by device name: a stable table for people and diffs.
    std::vector<const std::string*> names;
    names.reserve(clocks.size());
    for (const auto& [device, estimator] : clocks) names.push_back(&device);
    std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
    bool first = true;
    for (const std::string* device : names) {
      const auto& c = clocks.find(*device)->second.state();
      s += first ? "{" : ",{";
      first = false;
      s += R"("device":)";
      json::appendString(s, *device);
      s += R"(,"reference":")";
      s += toString(c.reference);
      s += "\",";
      appendClock(s, c);
      s += R"(,"rate":)";
      // Against the oldest usable snapshot that knew the device (it may be newer than `base`).
      const ControlSnapshot* b = nullptr;
      std::uint64_t before = 0;
      for (const auto& snap : control_snapshots) {
        if (mono - snap.mono > 15 * kNanosPerSecond || mono - snap.mono < kNanosPerSecond) continue;
        if (const auto it = snap.device_samples.find(*device); it != snap.device_samples.end()) {
          b = &snap;
          before = it->second;
          break;
        }
      }
      appendRate(s, b, mono, c.samples, before);
      s += '}';
    }
    s += "]}";
    return s;
  }

  std::string controlBuffer() const {
    const Nanos wall = wallNow();
    const auto js = journal->stats();
    std::string s = R"({"journal":)";
    appendControlJournal(s, js, wall);
    s += R"(,"sinks":[)";
    bool first = true;
    for (const auto& [name, b] : js.sinks) {
      s += first ? "{" : ",{";
      first = false;
      s += R"("name":)";
      json::appendString(s, name);
      s +=
          fmt::format(R"(,"cursor":{},"backlog":{},"dropped":{},)", b.cursor, b.backlog, b.dropped);
      appendOldestUnsent(s, b.oldest_unsent, wall);
      s += '}';
    }
    s += "]}";
    return s;
  }

  std::string controlSinksView() const {
    const Nanos wall = wallNow(), mono = monoNow();
    std::string s = R"({"sinks":)";
    appendControlSinks(s, journal->stats(), wall, mono, controlBase(mono));
    s += '}';
    return s;
  }

  /// `gatewayctl alerts`: firing alerts (rule × series, as alert records: "time" is when it
  /// fired), the undelivered outbox per notifier
  /// (oldest first, at most 50 each) and each notifier's state. Pending states are only counted
  /// (the engine keeps no list of them).
  std::string controlAlerts() const {
    std::string s = fmt::format(R"({{"rules":{},"firing":[)", cfg.alerts.size());
    bool first = true;
    if (alert_engine) {
      for (const auto& e : alert_engine->firing()) {
        s += first ? "" : ",";
        first = false;
        alerts::appendAlertJson(s, e);
      }
    }
    const auto counters = alert_engine ? alert_engine->counters() : alerts::EngineCounters{};
    s += fmt::format(R"(],"pending":[],"pending_count":{},"undelivered":[)", counters.pending);
    first = true;
    std::vector<ReadingRecord> outbox;
    for (const auto& f : outboxes) {
      const auto st = f->status();
      const std::string notifier = st.name.substr(st.name.find('.') + 1);
      journal->readAlerts(f->cursor(), 50, outbox);
      bool head = true;
      for (const auto& r : outbox) {
        auto e = alerts::parseAlertJson(r.alert);
        if (!e || std::find(e->notify.begin(), e->notify.end(), notifier) == e->notify.end())
          continue;
        s += first ? "" : ",";
        first = false;
        alerts::appendAlertJson(s, *e);
        s.pop_back();  // '}': the delivery state follows
        s += R"(,"notifier":)";
        json::appendString(s, notifier);
        // Only the oldest is being tried; the others wait behind it (in order).
        s += fmt::format(R"(,"attempts":{},"last_error":)", head && !st.up ? st.retries : 0);
        json::appendString(s, head && !st.up ? st.last_error : std::string());
        s += '}';
        head = false;
      }
    }
    s += R"(],"notifiers":[)";
    first = true;
    for (const auto& f : outboxes) {
      const auto st = f->status();
      s += first ? "" : ",";
      first = false;
      s += R"({"name":)";
      json::appendString(s, st.name.substr(st.name.find('.') + 1));
      s += fmt::format(R"(,"up":{},"delivered":{},"rejected":{},"retries":{},"last_error":)", st.up,
                       st.sent, st.rejected, st.retries);
      json::appendString(s, st.last_error);
      s += '}';
    }
    s += "]}";
    return s;
  }

  std::string control(std::string_view command) const {
    controlSample(monoNow());
    if (command == "status") return controlStatus();
    if (command == "sensors") return controlSensors();
    if (command == "buffer") return controlBuffer();
    if (command == "sinks") return controlSinksView();
    if (command == "alerts") return controlAlerts();
    std::string s = R"({"error":)";
    json::appendString(s, fmt::format("unknown command '{}'", command.substr(0, 64)));
    s += '}';
    return s;
  }
  // --- end of control socket views (issue 6) ---
};

Pipeline::Pipeline(boost::asio::io_context& io, const config::Config& config)
    : impl_(std::make_unique<Impl>(io, config)) {}
Pipeline::~Pipeline() { impl_->stop(); }
void Pipeline::start() { impl_->start(); }
void Pipeline::stop() { impl_->stop(); }
std::string Pipeline::statsJson() const { return impl_->statsJson(); }
std::string Pipeline::statusLine() const { return impl_->statusLine(); }
std::string Pipeline::sensorsJson() const { return impl_->sensorsJson(); }
std::string Pipeline::control(std::string_view command) const { return impl_->control(command); }

}  // namespace gw
