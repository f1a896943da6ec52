// A small MQTT v5 subscriber on the pipeline's Boost.Asio event loop.
//
// Why not Paho: Paho C sends the QoS 1 PUBACK in MQTTProtocol_handlePublishes *before* the
// application callback runs (paho.mqtt.cpp issue 353), so a reading acknowledged to the broker
// can still be lost in a crash. This client hands each message to the pipeline with an
// AckToken and sends the PUBACK only when the pipeline calls ack() — after the journal commit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace boost::asio {
class io_context;
}

namespace gw::mqtt {

struct TlsOptions {
  bool enabled = false;
  std::string ca_file;    ///< empty: system trust store
  std::string cert_file;  ///< client certificate (optional)
  std::string key_file;
  bool verify = true;  ///< verify the server certificate and host name
};

struct SubscriptionFilter {
  std::string filter;  ///< may contain + and #
  int qos = 1;         ///< 0 or 1
};

/// A Will message: the broker publishes it when the connection ends without a DISCONNECT
/// (crash, SIGKILL, network loss).
struct Will {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
};

struct ClientOptions {
  std::string host = "localhost";
  std::uint16_t port = 1883;
  TlsOptions tls;
  std::string client_id;
  std::string username;
  std::string password;
  bool clean_start = false;
  std::uint32_t session_expiry_s = 3600;
  std::uint16_t keepalive_s = 30;
  std::uint16_t receive_maximum = 1000;           ///< QoS 1 messages in flight (unacked)
  std::uint32_t maximum_packet_size = 16u << 20;  ///< larger packets are dropped by the broker
  std::vector<SubscriptionFilter> subscriptions;
  Nanos reconnect_min = 100 * kNanosPerMilli;
  Nanos reconnect_max = 30 * kNanosPerSecond;
  /// After a read that returned little (a steady trickle rather than a backlog), wait this long
  /// before reading again so that the next read takes many messages at once: one wakeup per
  /// batch instead of per message. 0: read again at once. Adds at most this much latency, or
  /// half of it plus one timer_grid period when that is set.
  Nanos read_batch_wait = 0;
  /// The batch wait ends on a multiple of this of the steady clock, the first at least half the
  /// wait away (batchWaitDue()), so that it expires together with the loop's other timers on
  /// that grid (the gateway's loop watch ticks at multiples of 10 ms, gateway/pipeline_watch.h):
  /// Asio then re-arms its timerfd once for all of them, and a steady stream is read once per
  /// tick instead of at the tick and again between ticks (issue 16). A wait then lasts between
  /// half of read_batch_wait and half of it plus one grid period. 0: no rounding.
  Nanos timer_grid = kLoopGrid;
  /// The TCP maximum segment size announced to the broker (TCP_MAXSEG before connecting), in
  /// bytes; 0: the kernel's (65,483 on loopback). A broker that leaves Nagle's algorithm on
  /// (Mosquitto's default, set_tcp_nodelay false) sends a segment shorter than this only when
  /// its previous short one was acknowledged, and Linux delays that acknowledgement until the
  /// next read: with the batch wait, what arrived during one wait was read only at the end of
  /// the next (1.5 waits of latency on average instead of 0.5, issue 16). Full segments are
  /// sent at once and every second one acknowledged at once, so with segments of Ethernet's
  /// size a steady stream reaches the socket as it comes. No effect on what is delivered.
  /// The price is the broker's: at the peak rate Mosquitto spent 18.3 us of CPU per QoS 0
  /// message with 1,400-byte segments against 17.6 with 4 KiB and 17.1 with 8 KiB (medians of
  /// 3 floods of 200,000 on a loaded VM; gatewayd's own CPU per reading the same): at most ~6 %
  /// of a peak rate several times the plant's, while a Nagle broker holds a partial segment
  /// longer the larger it is (8 KiB take ~6 ms to fill at 10,000 readings/s of ~140 bytes).
  int max_segment = 1400;
  /// Bounds on the PUBLISH messages handed over in one turn of the event loop: after this
  /// many, or once this much time went by (checked every few messages), the rest of what was
  /// read waits for a handler posted behind everything else that is ready (timers, the control
  /// socket, slices of closed windows), so a large read never holds the loop for long (issue
  /// 13). Nothing is dropped and the order is kept. 0: no bound of that kind.
  std::size_t max_messages_per_turn = 1024;
  Nanos turn_budget = 2 * kNanosPerMilli;
  /// Resolve + TCP connect + TLS handshake + CONNACK must finish within this.
  Nanos connect_timeout = 15 * kNanosPerSecond;
  /// Called before each CONNECT: fills in the Will for this connection (a Sparkplug host's
  /// STATE death carries the same timestamp as the birth it publishes after connecting) and
  /// returns true, or returns false for no Will. Empty: no Will.
  std::function<bool(Will&)> make_will;
  /// Called when a turn that handed over packets ends (the loop's handler returns): the
  /// messages of one socket read's slice are one turn of the loop.
  std::function<void()> on_turn_end;
};

/// When a batch wait of `wait` started at `now` ends (steady clock): the first multiple of
/// `grid` at least wait / 2 after now (so between wait / 2 and wait / 2 + grid), or now + wait
/// with no grid. Always on the grid: a read that follows a tick of the loop watch waits for
/// the next tick instead of ending off the grid every other time (issue 16).
constexpr Nanos batchWaitDue(Nanos now, Nanos wait, Nanos grid) {
  if (grid <= 0) return now + wait;
  const Nanos earliest = now + std::max<Nanos>(wait / 2, 1);
  return (earliest + grid - 1) / grid * grid;
}

/// Identifies a received QoS 1 message for ack(). A token from an older connection is
/// ignored by ack(): the broker redelivers that message on the new connection.
struct AckToken {
  std::uint64_t connection = 0;
  std::uint16_t packet_id = 0;  ///< 0 for QoS 0 (nothing to ack)
};

/// A received PUBLISH. Views are valid only during the handler call.
struct Message {
  std::string_view topic;
  std::string_view payload;
  /// MQTT v5 user properties, in packet order (name, value).
  const std::vector<std::pair<std::string_view, std::string_view>>* user_properties = nullptr;
  int qos = 0;
  bool dup = false;
  Nanos receive_time = 0;  ///< wall time when the packet was read
};

struct ClientStatus {
  bool connected = false;
  std::string last_error;                 ///< kept after a reconnect, with its time, for gatewayctl
  Nanos last_error_time = 0;              ///< wall time of last_error; 0 = none yet
  std::uint64_t connects = 0;             ///< successful CONNACKs = current connection number
  std::uint64_t connection_failures = 0;  ///< failed attempts and lost connections
  bool session_present = false;           ///< the broker resumed our session on this connection
  std::uint64_t messages = 0;
  std::uint64_t acks_sent = 0;
  std::uint32_t in_flight = 0;      ///< QoS 1 messages handed over and not yet acked
  std::uint64_t read_pauses = 0;    ///< times pauseReading(true) stopped the reading
  std::uint64_t turns_yielded = 0;  ///< reads handed over in more than one turn (the bounds above)
};

/// Threading: everything, including the handlers, runs on the io_context's thread; the
/// io_context must be run by exactly one thread. Handlers may call ack(), stop() and even
/// destroy the Client.
///
/// Order per connection: on_state(true, "") once, then on_message(...) calls; on loss (or a
/// failed attempt) on_state(false, reason), then a reconnect after backoff. on_state(true)
/// normally follows the last SUBACK; when a resumed session redelivers before the SUBACK it
/// comes just before the first such message (the subscriptions are part of that session).
///
/// Acknowledgement: a QoS 1 message is acknowledged only by ack(). Tokens die with their
/// connection: after a loss, in_flight drops to 0, ack() of an older token does nothing, and
/// the broker (clean_start=false, session_expiry > 0) redelivers every unacked message with
/// DUP set and a new token. Acks queued before stop() go out before its DISCONNECT.
/// Delivery is therefore at-least-once: a message committed but not acked before a crash
/// arrives again.
///
/// Flow control: receive_maximum is sent to the broker. Mosquitto 2.0.11 (Debian 12) exceeds
/// it after PUBACKs and on redelivery; the client accepts the extra messages (logged, and
/// visible as in_flight > receive_maximum) rather than disconnect into a redelivery loop.
class Client {
 public:
  using MessageHandler = std::function<void(const Message&, AckToken)>;
  /// Called on connect (true) and on connection loss or a failed attempt (false, reason).
  using StateHandler = std::function<void(bool connected, const std::string& reason)>;

  static std::unique_ptr<Client> create(boost::asio::io_context& io, ClientOptions options,
                                        MessageHandler on_message, StateHandler on_state);
  virtual ~Client() = default;

  /// Connects (and reconnects with exponential backoff, forever) and subscribes.
  virtual void start() = 0;
  /// Sends DISCONNECT (keeping the session) and closes; no handler is called afterwards.
  virtual void stop() = 0;
  /// Sends the PUBACK for a QoS 1 message. No-op for QoS 0 tokens and stale connections.
  virtual void ack(AckToken token) = 0;
  /// Publishes on the current connection (QoS 0 or 1, no properties). False when not connected
  /// or the packet cannot be encoded. QoS 1 is not resent after a connection loss: callers
  /// publish what matters again on the next connection (Sparkplug STATE does).
  virtual bool publish(std::string_view topic, std::string_view payload, int qos, bool retain) = 0;

  /// Backpressure: while paused, no further PUBLISH is handed over (at most the one being
  /// handled completes) and the socket is not read, so TCP holds the broker back and it keeps
  /// the messages queued; nothing read is dropped. Other packets already read still are
  /// handled, and a PINGRESP left unread does not count as a dead connection. Resuming
  /// continues from the loop (safe to call from inside the message handler).
  virtual void pauseReading(bool paused) = 0;
  virtual ClientStatus status() const = 0;
};

}  // namespace gw::mqtt
