#include "protocols/mqtt/mqtt_source.h"

#include <fmt/format.h>

#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "core/config/section.h"
#include "core/log.h"
#include "core/source.h"
#include "protocols/mqtt/mqtt_client.h"
#include "protocols/mqtt/mqtt_config.h"
#include "protocols/mqtt/mqtt_probe.h"
#include "protocols/mqtt/topic_template.h"
#include "protocols/payload/message_decoder.h"
#include "protocols/sparkplug/sparkplug_host.h"

namespace gw::mqtt {
namespace {

struct Route {
  SubscribeConfig config;
  std::optional<TopicTemplate> tmpl;  ///< none for format sparkplug_b
  payload::MessageDecoder decoder;
};

/// Sparkplug B metrics that are not readings, counted by reason (status figures).
constexpr std::string_view kSkipReasons[] = {"string", "bytes", "dataset", "template", "file"};

class MqttSource final : public gw::Source,
                         private sparkplug::HostOutput,
                         private sparkplug::StateStore {
 public:
  MqttSource(const BuildContext& context, const MqttConfig& config, Ingest& ingest)
      : io_(context.io),
        config_(config),
        ingest_(ingest),
        broker_reference_(context.broker_reference),
        broker_property_(context.broker_property),
        batch_wait_(batchWait(config, context.commit_interval)) {
    bool sparkplug = false;
    for (const auto& sc : config_.subscriptions) {
      std::string error;
      std::optional<TopicTemplate> tmpl;
      if (!sc.sparkplug) tmpl = TopicTemplate::parse(sc.template_text, error);  // checked
      sparkplug |= sc.sparkplug;
      routes_.push_back(Route{sc, std::move(tmpl), payload::MessageDecoder(sc.payload)});
    }
    if (sparkplug)
      host_ = std::make_unique<sparkplug::Host>(config_.sparkplug.host,
                                                static_cast<sparkplug::StateStore*>(this));
    if (!config_.sparkplug.host_id.empty())
      state_topic_ = "spBv1.0/STATE/" + config_.sparkplug.host_id;
  }

  const std::string& name() const override { return name_; }

  void start() override {
    ClientOptions options = config_.client;
    options.read_batch_wait = batch_wait_;
    if (!state_topic_.empty()) {
      // Sparkplug Primary Host: the Will is the STATE death with the birth's timestamp.
      options.make_will = [this](Will& w) {
        state_timestamp_ms_ = static_cast<std::uint64_t>(wallNow() / kNanosPerMilli);
        w = {state_topic_, sparkplug::statePayload(false, state_timestamp_ms_), 1, true};
        return true;
      };
    }
    options.on_turn_end = [this] { ingest_.turnDone(); };
    client_ = Client::create(
        io_, options, [this](const Message& m, AckToken t) { onMessage(m, t); },
        [this](bool up, const std::string& reason) {
          if (up) {
            log::notice("mqtt: connected to {} as {}", config_.uri, config_.client.client_id);
            if (!state_topic_.empty())
              client_->publish(state_topic_, sparkplug::statePayload(true, state_timestamp_ms_), 1,
                               true);
          } else {
            log::warn("mqtt: disconnected from {}: {}", config_.uri, reason);
          }
        });
    client_->start();
  }

  void committed(std::uint64_t seq) override {
    while (!waiting_.empty() && waiting_.front().first <= seq) {
      client_->ack(waiting_.front().second);
      waiting_.pop_front();
    }
    if (paused_ && !ingest_.backpressure()) {
      paused_ = false;
      client_->pauseReading(false);
    }
  }

  void stop() override {
    sparkplug_timer_.cancel();
    // A Primary Host going away on purpose says so (the Will is only for a crash).
    if (client_ && !state_topic_.empty())
      client_->publish(state_topic_, sparkplug::statePayload(false, state_timestamp_ms_), 1, true);
    if (client_) client_->stop();
  }

  ComponentStatus status() const override {
    const auto cs = client_ ? client_->status() : ClientStatus{};
    ComponentStatus s;
    s.name = name_;
    s.target = config_.uri;
    s.up = cs.connected;
    using K = Figure::Kind;
    s.figures = {
        {"messages", cs.messages, K::kCounter, "MQTT PUBLISH messages received."},
        {"connects", cs.connects, K::kCounter, "Successful MQTT connections."},
        {"connection_failures", cs.connection_failures, K::kCounter,
         "Failed MQTT connection attempts and lost connections."},
        {"session_present", cs.session_present, K::kFlag,
         "Whether the broker resumed the persistent session."},
        {"in_flight", cs.in_flight, K::kGauge, "QoS 1 messages received and not yet acknowledged."},
        {"pending_acks", waiting_.size(), K::kGauge,
         "Messages waiting for the journal commit before their acknowledgement."},
        {"read_pauses", cs.read_pauses, K::kCounter,
         "Times reading from the broker paused because the journal was behind."},
    };
    if (host_) {
      const auto c = host_->counters();
      s.figures.insert(
          s.figures.end(),
          {
              {"sparkplug_nodes", c.nodes, K::kGauge, "Sparkplug B edge nodes tracked."},
              {"sparkplug_births", c.births, K::kCounter, "Sparkplug NBIRTH and DBIRTH messages."},
              {"sparkplug_deaths", c.deaths, K::kCounter,
               "Sparkplug NDEATH (matching bdSeq) and DDEATH messages."},
              {"sparkplug_stale_deaths", c.stale_deaths, K::kCounter,
               "Sparkplug NDEATH whose bdSeq is not the current birth's (ignored)."},
              {"sparkplug_rebirths", c.rebirths_requested, K::kCounter,
               "Sparkplug rebirth requests (NCMD Node Control/Rebirth) sent."},
              {"sparkplug_seq_gaps", c.seq_gaps, K::kCounter, "Sparkplug seq gaps seen."},
              {"sparkplug_unknown_alias", c.unknown_alias, K::kCounter,
               "Sparkplug DATA messages with an alias no birth bound (journaled as alias:N)."},
              {"sparkplug_historical", c.historical, K::kCounter,
               "Sparkplug is_historical metrics (forwarded with their own time)."},
              {"sparkplug_skipped_string", skipped_[0], K::kCounter,
               "Sparkplug String/Text/UUID metrics (not readings)."},
              {"sparkplug_skipped_bytes", skipped_[1], K::kCounter,
               "Sparkplug Bytes metrics (not readings)."},
              {"sparkplug_skipped_dataset", skipped_[2], K::kCounter,
               "Sparkplug DataSet metrics (not readings)."},
              {"sparkplug_skipped_template", skipped_[3], K::kCounter,
               "Sparkplug Template metrics (not readings)."},
              {"sparkplug_skipped_file", skipped_[4], K::kCounter,
               "Sparkplug File metrics (not readings)."},
              {"sparkplug_skipped_other", skipped_[5], K::kCounter,
               "Sparkplug metrics without a usable value (null, DateTime, arrays, mismatched "
               "type, no name or alias)."},
          });
    }
    s.last_error = cs.last_error;
    s.last_error_time = cs.last_error_time;
    return s;
  }

 private:
  void onMessage(const Message& m, AckToken token) {
    // Bad messages are acknowledged too (after the next commit): redelivering them would not
    // make them good, and they are counted and logged.
    std::uint64_t seq = handle(m);
    if (token.packet_id != 0) waiting_.emplace_back(seq, token);
    // The journal is behind (a burst of closed windows, a slow or failing disk): take nothing
    // more until a commit catches up. What was read is kept; the broker queues the rest.
    if (!paused_ && ingest_.backpressure()) {
      paused_ = true;
      client_->pauseReading(true);
    }
  }

  BadInput badInput(std::string_view reason, const Message& m, std::string_view device) const {
    return {name_, reason, m.topic, m.payload, device, m.payload.size()};
  }

  /// Routes and decodes one message; returns the seq its acknowledgement waits for.
  std::uint64_t handle(const Message& m) {
    Route* route = nullptr;
    for (auto& r : routes_) {
      if (topicMatchesFilter(r.config.topic, m.topic) &&
          (r.config.sparkplug || r.tmpl->match(m.topic, series_))) {
        route = &r;
        break;
      }
    }
    if (!route) {
      ingest_.bad(badInput("no_template", m, {}));
      return ingest_.appendedSeq();
    }
    if (route->config.sparkplug) return handleSparkplug(m);
    if (const char* error = route->decoder.decode(m.payload, series_)) {
      ingest_.bad(badInput(error, m, series_.device));
      return ingest_.appendedSeq();
    }
    if (route->decoder.badTimestamp()) ingest_.bad(badInput("bad_timestamp", m, series_.device));

    Nanos reference_time = m.receive_time;
    TimeReference reference = TimeReference::kReceive;
    referenceOf(m, reference_time, reference);
    std::uint64_t seq = ingest_.appendedSeq();
    route->decoder.emit(series_, m.receive_time, [&](Series& s, const Decoded& d) {
      seq = ingest_.reading(s, d, reference_time, reference);
    });
    return seq;
  }

  /// The broker's receive stamp as the reference time, when configured and present.
  void referenceOf(const Message& m, Nanos& reference_time, TimeReference& reference) {
    if (broker_reference_ && m.user_properties) {
      for (const auto& [prop, value] : *m.user_properties) {
        if (prop != broker_property_) continue;
        if (auto t = parseBrokerStamp(value, m.receive_time)) {
          reference_time = *t;
          reference = TimeReference::kBroker;
          ingest_.brokerStamp(*t, m.receive_time);
        } else {
          ingest_.bad(badInput("bad_broker_stamp", m, {}));
        }
        break;
      }
    }
  }

  // ---- Sparkplug B ----------------------------------------------------------------------------

  std::uint64_t handleSparkplug(const Message& m) {
    sp_reference_time_ = m.receive_time;
    sp_reference_ = TimeReference::kReceive;
    referenceOf(m, sp_reference_time_, sp_reference_);
    sp_seq_ = ingest_.appendedSeq();
    if (const char* error = host_->handle(m.topic, m.payload, monoNow(), *this))
      ingest_.bad(badInput(error, m, {}));
    armSparkplugTimer();
    return sp_seq_;
  }

  void armSparkplugTimer() {
    const auto next = host_->nextDeadline();
    if (!next || (sp_timer_at_ && *sp_timer_at_ <= *next)) return;
    sp_timer_at_ = *next;
    sparkplug_timer_.expires_after(std::chrono::nanoseconds(std::max<Nanos>(0, *next - monoNow())));
    sparkplug_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      sp_timer_at_.reset();
      host_->tick(monoNow(), *this);
      armSparkplugTimer();
    });
  }

  // sparkplug::HostOutput
  void reading(Series& series, const Decoded& decoded, bool historical) override {
    sp_seq_ = ingest_.reading(series, decoded, sp_reference_time_, sp_reference_);
  }
  void rebirth(std::string_view group, std::string_view edge_node, std::string_view why) override {
    const std::string topic = fmt::format("spBv1.0/{}/NCMD/{}", group, edge_node);
    const bool sent =
        client_ && client_->publish(topic,
                                    sparkplug::rebirthPayload(
                                        static_cast<std::uint64_t>(wallNow() / kNanosPerMilli)),
                                    0, false);
    if (sent)
      log::notice("sparkplug: asked {}/{} to rebirth: {}", group, edge_node, why);
    else
      log::warn("sparkplug: cannot ask {}/{} to rebirth ({}): not connected", group, edge_node,
                why);
  }
  void online(std::string_view device, bool online) override {
    ingest_.deviceOnline(device, online);
  }
  void skipped(std::string_view reason) override {
    size_t i = 0;
    while (i < std::size(kSkipReasons) && kSkipReasons[i] != reason) ++i;
    ++skipped_[i];
  }
  // sparkplug::StateStore
  std::optional<std::string> get(std::string_view key) const override { return ingest_.state(key); }
  void put(std::string_view key, std::string value) override {
    ingest_.putState(key, std::move(value));
  }

  const std::string name_ = "mqtt";
  boost::asio::io_context& io_;
  const MqttConfig config_;
  Ingest& ingest_;
  const bool broker_reference_;
  const std::string broker_property_;
  std::vector<Route> routes_;
  std::unique_ptr<Client> client_;
  /// QoS 1 messages taken, oldest first, with the seq the commit must reach for each.
  std::deque<std::pair<std::uint64_t, AckToken>> waiting_;
  bool paused_ = false;  // reading paused: the journal is behind
  // Scratch reused for every message (no allocation in the steady state).
  Series series_;
  // Sparkplug B: the host state, the message being handled, the tick timer, STATE.
  std::unique_ptr<sparkplug::Host> host_;
  Nanos sp_reference_time_ = 0;
  TimeReference sp_reference_ = TimeReference::kReceive;
  std::uint64_t sp_seq_ = 0;
  boost::asio::steady_timer sparkplug_timer_{io_};
  std::optional<Nanos> sp_timer_at_;
  std::uint64_t skipped_[std::size(kSkipReasons) + 1] = {};
  std::string state_topic_;
  std::uint64_t state_timestamp_ms_ = 0;
  Nanos batch_wait_ = 0;
};

class MqttSourceConfig final : public SourceConfig {
 public:
  explicit MqttSourceConfig(MqttConfig config) : config_(std::move(config)) {}
  std::string name() const override { return "mqtt"; }
  std::string target() const override { return config_.uri; }
  std::unique_ptr<gw::Source> build(const BuildContext& context, Ingest& ingest) const override {
    return std::make_unique<MqttSource>(context, config_, ingest);
  }
  std::string reloadWarning(const SourceConfig& previous) const override {
    const auto* prev = dynamic_cast<const MqttSourceConfig*>(&previous);
    if (!prev || prev->config_.client.client_id == config_.client.client_id) return {};
    return fmt::format(
        "mqtt.client_id changed from {} to {}: QoS 1 messages queued in the old session stay "
        "with the broker",
        prev->config_.client.client_id, config_.client.client_id);
  }
  Probe probe() const override {
    return [client = config_.client](Nanos timeout) { return probeBroker(client, timeout); };
  }
  const MqttConfig& config() const { return config_; }

 private:
  MqttConfig config_;
};

std::unique_ptr<SourceConfig> parse(config::Section& s, const ParseContext& context) {
  config::Section* sparkplug = context.table ? context.table("sparkplug") : nullptr;
  return std::make_unique<MqttSourceConfig>(parseConfig(s, context.gateway_id, sparkplug));
}

}  // namespace

Component component() { return {ComponentKind::kSource, "mqtt", false, &parse, nullptr}; }

}  // namespace gw::mqtt
