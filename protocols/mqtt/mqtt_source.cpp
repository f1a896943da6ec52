#include "protocols/mqtt/mqtt_source.h"

#include <fmt/format.h>

#include <deque>
#include <utility>
#include <vector>

#include "core/config/section.h"
#include "core/log.h"
#include "core/source.h"
#include "protocols/mqtt/mqtt_client.h"
#include "protocols/mqtt/mqtt_config.h"
#include "protocols/mqtt/topic_template.h"
#include "protocols/payload/message_decoder.h"

namespace gw::mqtt {
namespace {

struct Route {
  SubscribeConfig config;
  TopicTemplate tmpl;
  payload::MessageDecoder decoder;
};

class MqttSource final : public gw::Source {
 public:
  MqttSource(const BuildContext& context, const MqttConfig& config, Ingest& ingest)
      : io_(context.io),
        config_(config),
        ingest_(ingest),
        broker_reference_(context.broker_reference),
        broker_property_(context.broker_property) {
    for (const auto& sc : config_.subscriptions) {
      std::string error;
      auto tmpl = TopicTemplate::parse(sc.template_text, error);  // the parser checked it
      routes_.push_back(Route{sc, std::move(*tmpl), payload::MessageDecoder(sc.payload)});
    }
  }

  const std::string& name() const override { return name_; }

  void start() override {
    client_ = Client::create(
        io_, config_.client, [this](const Message& m, AckToken t) { onMessage(m, t); },
        [this](bool up, const std::string& reason) {
          if (up)
            log::notice("mqtt: connected to {} as {}", config_.uri, config_.client.client_id);
          else
            log::warn("mqtt: disconnected from {}: {}", config_.uri, reason);
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

  /// Routes and decodes one message; returns the seq its acknowledgement waits for.
  std::uint64_t handle(const Message& m) {
    Route* route = nullptr;
    for (auto& r : routes_) {
      if (topicMatchesFilter(r.config.topic, m.topic) && r.tmpl.match(m.topic, series_)) {
        route = &r;
        break;
      }
    }
    if (!route) {
      ingest_.bad("no_template", m.topic, m.payload.size());
      return ingest_.appendedSeq();
    }
    if (const char* error = route->decoder.decode(m.payload, series_)) {
      ingest_.bad(error, m.topic, m.payload.size());
      return ingest_.appendedSeq();
    }
    if (route->decoder.badTimestamp()) ingest_.bad("bad_timestamp", m.topic, m.payload.size());

    Nanos reference_time = m.receive_time;
    TimeReference reference = TimeReference::kReceive;
    if (broker_reference_ && m.user_properties) {
      for (const auto& [prop, value] : *m.user_properties) {
        if (prop != broker_property_) continue;
        if (auto t = parseBrokerStamp(value, m.receive_time)) {
          reference_time = *t;
          reference = TimeReference::kBroker;
          ingest_.brokerStamp(*t, m.receive_time);
        } else {
          ingest_.bad("bad_broker_stamp", m.topic, m.payload.size());
        }
        break;
      }
    }
    std::uint64_t seq = ingest_.appendedSeq();
    route->decoder.emit(series_, m.receive_time, [&](Series& s, const Decoded& d) {
      seq = ingest_.reading(s, d, reference_time, reference);
    });
    return seq;
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
  const MqttConfig& config() const { return config_; }

 private:
  MqttConfig config_;
};

std::unique_ptr<SourceConfig> parse(config::Section& s, const ParseContext& context) {
  return std::make_unique<MqttSourceConfig>(parseConfig(s, context.gateway_id));
}

}  // namespace

Component component() { return {ComponentKind::kSource, "mqtt", false, &parse, nullptr}; }

}  // namespace gw::mqtt
