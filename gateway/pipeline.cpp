#include "gateway/pipeline.h"

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <unordered_map>
#include <vector>

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
    if (cfg.timeseries && cfg.timeseries->send_readings) jo.sinks.push_back("timeseries");
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
    if (cfg.timeseries && cfg.timeseries->send_readings) {
      forwarders.push_back(std::make_unique<Forwarder>(
          io, *journal, timeseries::makeTimeseriesSink(cfg.timeseries->options),
          cfg.timeseries->forward));
    }
    if (forwarders.empty())
      log::warn(
          "no sink configured ([kafka] or [timeseries]): readings only accumulate in the journal");
  }

  boost::asio::io_context& io;
  config::Config cfg;
  std::unique_ptr<buffer::Journal> journal;
  std::vector<Route> routes;
  std::vector<std::unique_ptr<Forwarder>> forwarders;
  std::unique_ptr<mqtt::Client> client;
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
    client = mqtt::Client::create(
        io, cfg.mqtt.client, [this](const mqtt::Message& m, mqtt::AckToken t) { onMessage(m, t); },
        [this](bool up, const std::string& reason) {
          if (up)
            log::notice("mqtt: connected to {} as {}", cfg.mqtt.uri, cfg.mqtt.client.client_id);
          else
            log::warn("mqtt: disconnected from {}: {}", cfg.mqtt.uri, reason);
        });
    client->start();
    for (auto& f : forwarders) f->poke();  // backlog left from before a restart
    scheduleCommit();
    scheduleRetention();
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
      journal->append(id, v.value, event_time, decoded.device_time, reference);
      ++readings;
    }
    if (journal->pending() >= cfg.buffer.batch) commitNow();
  }

  /// True when a source must hold back: the journal cannot commit and memory is at its bound.
  bool backpressure() const { return journal->pending() >= maxPending(); }

  /// Rows held in memory while commits fail, at most.
  size_t maxPending() const { return std::max<size_t>(cfg.buffer.batch * 20, 20000); }

  void commitNow() {
    std::uint64_t cursor_sum = 0;
    for (auto& f : forwarders) cursor_sum += f->cursor();
    if (journal->pending() == 0 && pending_acks.empty() && cursor_sum == committed_cursor_sum)
      return;
    if (!journal->commit()) {
      ++commit_failures;  // the journal logged why; rows and acks stay pending
      return;
    }
    committed_cursor_sum = cursor_sum;
    for (const auto& t : pending_acks) client->ack(t);
    pending_acks.clear();
    for (auto& f : forwarders) f->poke();
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
    std::string s =
        fmt::format("mqtt {}, {} readings", ms.connected ? "connected" : "disconnected", readings);
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
    if (client) client->stop();
    for (auto& f : forwarders) f->stop();
    journal->commit();  // the last cursor moves
    log::info("stats {}", statsJson());
  }
};

Pipeline::Pipeline(boost::asio::io_context& io, const config::Config& config)
    : impl_(std::make_unique<Impl>(io, config)) {}
Pipeline::~Pipeline() { impl_->stop(); }
void Pipeline::start() { impl_->start(); }
void Pipeline::stop() { impl_->stop(); }
std::string Pipeline::statsJson() const { return impl_->statsJson(); }
std::string Pipeline::statusLine() const { return impl_->statusLine(); }
std::string Pipeline::sensorsJson() const { return impl_->sensorsJson(); }

}  // namespace gw
