// MQTT v5 subscriber on Boost.Asio. See mqtt_client.h for the contract.
//
// One file on purpose (~790 lines): connect, TLS, CONNACK, SUBSCRIBE, read, keepalive, write and
// reconnect are steps of one state machine over Impl and Conn, each ending in the next step or
// failConnection(); split by step, every transition would cross files (the codec is apart).
//
// Shape: Impl is shared_ptr-owned and every completion handler holds a reference to it and to
// the Conn (one connection attempt: socket, TLS stream, timers, buffers) it was started for, so
// the Client handle can go away while operations are pending. A handler for a Conn that is no
// longer current returns without doing anything.
//
// QoS 2: subscriptions ask for QoS 0/1 only, so a conforming broker never sends QoS 2. If one
// arrives anyway it is a protocol error: the client sends DISCONNECT 0x9B (QoS not supported)
// and reconnects; the message is not delivered.
#include "protocols/mqtt/mqtt_client.h"

// clang-format off
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it
// clang-format on

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <algorithm>
#include <bitset>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "core/log.h"
#include "core/retry_policy.h"
#include "core/steady.h"
#include "protocols/mqtt/mqtt_codec.h"

namespace gw::mqtt {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr std::size_t kInitialReadBuffer = 64 * 1024;
/// A read of fewer bytes than this is "little": the socket had only a trickle, so the next
/// read waits ClientOptions::read_batch_wait for more to accumulate (a larger one reads on at
/// once: a backlog is taken as fast as the pipeline takes it).
constexpr std::size_t kBatchReadBytes = 16 * 1024;
/// A connection that lived this long resets the reconnect backoff; a shorter one (session
/// taken over, broker that accepts and drops) keeps backing off.
constexpr Nanos kStableConnection = 10 * kNanosPerSecond;
/// How long a closing connection may take to flush its DISCONNECT.
constexpr auto kCloseGrace = std::chrono::seconds(2);
constexpr Nanos kLogRepeatInterval = 60 * kNanosPerSecond;

std::chrono::nanoseconds toChrono(Nanos n) { return std::chrono::nanoseconds(n); }

RetryOptions reconnectOptions(const ClientOptions& o) {
  const Nanos initial = o.reconnect_min > 0 ? o.reconnect_min : kNanosPerMilli;
  return {.initial = initial, .max = std::max(initial, o.reconnect_max)};
}

/// "cannot open: No such file or directory" reads better than OpenSSL's "system lib".
std::string fileError(const std::string& path, const error_code& ec) {
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    return ec.message();
  }
  return fmt::format("cannot open: {}", std::strerror(errno));
}

/// One connection attempt and, once it succeeds, the connection.
struct Conn {
  explicit Conn(asio::io_context& io)
      : resolver(io), plain(io), keepalive_timer(io), deadline_timer(io), read_wait_timer(io) {}

  tcp::resolver resolver;
  std::optional<ssl::context> tls_ctx;  // declared before `tls`: outlives the stream
  std::optional<ssl::stream<tcp::socket>> tls;
  tcp::socket plain;  // used when TLS is off
  asio::steady_timer keepalive_timer;
  asio::steady_timer deadline_timer;   // connect timeout, then close grace
  asio::steady_timer read_wait_timer;  // read_batch_wait after a short read

  std::vector<char> rbuf;
  std::size_t rbegin = 0;
  std::size_t rend = 0;
  std::string pending;  // packets queued while a write is in flight (coalesced)
  std::string writing;  // the bytes of the write in flight
  bool write_in_flight = false;
  bool close_after_flush = false;

  bool closed = false;
  bool established = false;  // CONNACK success
  bool ready = false;        // on_state(true) delivered
  bool ping_outstanding = false;
  bool read_stalled = false;  // reading paused: no read outstanding
  std::size_t last_read = 0;  // bytes of the last read: little ones wait read_batch_wait
  int low_watermark = 1;      // the socket's SO_RCVLOWAT (plain TCP only)
  std::uint64_t number = 0;   // AckToken::connection
  std::uint16_t keepalive_s = 0;
  std::uint32_t server_max_packet = 0;  // 0: no limit
  Nanos connected_at = 0;               // monotonic

  struct PendingSuback {
    std::uint16_t packet_id;
    std::size_t first;  // index into ClientOptions::subscriptions
    std::size_t count;
  };
  std::vector<PendingSuback> subacks;

  tcp::socket& socket() { return tls ? tls->next_layer() : plain; }

  template <typename F>
  void withStream(F&& f) {
    if (tls) {
      f(*tls);
    } else {
      f(plain);
    }
  }

  void close() {
    if (closed) return;
    closed = true;
    resolver.cancel();
    keepalive_timer.cancel();
    deadline_timer.cancel();
    read_wait_timer.cancel();
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
  }
};

class Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, ClientOptions options, Client::MessageHandler on_message,
       Client::StateHandler on_state)
      : io_(io),
        opts_(std::move(options)),
        on_message_(std::move(on_message)),
        on_state_(std::move(on_state)),
        backoff_timer_(io),
        reconnect_(reconnectOptions(opts_)),
        log_limiter_(kLogRepeatInterval) {
    if (opts_.receive_maximum == 0) opts_.receive_maximum = 1;
    if (opts_.maximum_packet_size == 0 || opts_.maximum_packet_size > codec::kMaxVarInt + 5) {
      opts_.maximum_packet_size = codec::kMaxVarInt + 5;
    }
    client_id_ = opts_.client_id;
    prefix_ = fmt::format("mqtt {}:{}", opts_.host, opts_.port);
  }

  void start() {
    if (started_ || stopped_) return;
    started_ = true;
    if (!opts_.clean_start && opts_.session_expiry_s == 0) {
      log::notice(
          "{}: clean_start is off but session_expiry is 0: the broker drops the "
          "session (and queued messages) at every disconnect",
          prefix_);
    }
    connect();
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    backoff_timer_.cancel();
    if (auto conn = std::exchange(conn_, nullptr)) {
      clearSession();
      if (conn->established) {
        codec::appendDisconnect(conn->pending, codec::reason::kSuccess);  // keeps the session
        closeAfterFlush(conn);
      } else {
        conn->close();
      }
    }
  }

  void ack(AckToken token) {
    if (stopped_ || !conn_ || !conn_->established || token.packet_id == 0 ||
        token.connection != conn_->number || !in_flight_ids_.test(token.packet_id)) {
      return;  // stale, QoS 0 or already acknowledged: the broker redelivers if needed
    }
    in_flight_ids_.reset(token.packet_id);
    --in_flight_;
    ++status_.acks_sent;
    codec::appendPuback(conn_->pending, token.packet_id);
    flush(conn_);
  }

  bool publish(std::string_view topic, std::string_view payload, int qos, bool retain) {
    if (stopped_ || !conn_ || !conn_->established || conn_->closed) return false;
    std::uint16_t id = 0;
    if (qos > 0 && ++next_packet_id_ == 0) next_packet_id_ = 1;
    if (qos > 0) id = next_packet_id_;
    if (!codec::appendPublish(conn_->pending, topic, payload, qos, retain, id)) return false;
    flush(conn_);
    return true;
  }

  void pauseReading(bool paused) {
    if (paused == reading_paused_) return;
    reading_paused_ = paused;
    if (paused) {
      ++status_.read_pauses;
      return;
    }
    // Resumed from inside a handler (the pipeline commits while a message is handled): carry
    // on from the loop, not re-entrantly.
    auto self = shared_from_this();
    asio::post(io_, [self, conn = conn_] {
      if (!conn || conn->closed || conn != self->conn_ || self->reading_paused_ ||
          !conn->read_stalled)
        return;
      conn->read_stalled = false;
      conn->last_read = kBatchReadBytes;  // the broker queued meanwhile: read on at once
      self->drain(conn);
    });
  }

  ClientStatus status() const {
    ClientStatus s = status_;
    s.in_flight = in_flight_;
    return s;
  }

 private:
  // ---- connecting ----------------------------------------------------------------------------

  void connect() {
    if (stopped_) return;
    auto conn = std::make_shared<Conn>(io_);
    conn_ = conn;
    auto self = shared_from_this();
    if (opts_.tls.enabled) {
      std::string error;
      if (!setupTls(*conn, error)) {
        // Reported from a handler, like every other failure, never from inside start().
        asio::post(io_, [self, conn, error] { self->failConnection(conn, error); });
        return;
      }
    }
    conn->deadline_timer.expires_after(toChrono(opts_.connect_timeout));
    conn->deadline_timer.async_wait([self, conn](const error_code& ec) {
      if (ec || conn->closed || conn->established) return;
      self->failConnection(conn, fmt::format("timed out connecting (connect_timeout {} ms)",
                                             self->opts_.connect_timeout / kNanosPerMilli));
    });
    conn->resolver.async_resolve(
        opts_.host, std::to_string(opts_.port),
        [self, conn](const error_code& ec, const tcp::resolver::results_type& results) {
          if (conn->closed || conn != self->conn_) return;
          if (ec) {
            self->failConnection(conn,
                                 fmt::format("resolving {}: {}", self->opts_.host, ec.message()));
            return;
          }
          self->connectTo(conn, results, results.begin());
        });
  }

  /// Tries the resolved endpoints in turn. The socket is opened here rather than by
  /// asio::async_connect so that the MSS is set before the SYN announces it
  /// (ClientOptions::max_segment).
  void connectTo(const std::shared_ptr<Conn>& conn, const tcp::resolver::results_type& results,
                 tcp::resolver::results_type::const_iterator it) {
    error_code ec;
    tcp::socket& s = conn->socket();
    s.close(ec);
    s.open(it->endpoint().protocol(), ec);
    if (!ec && opts_.max_segment > 0) {
      const int mss = opts_.max_segment;
      // Not supported or refused: the kernel's MSS, only the latency described there.
      static_cast<void>(::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss));
    }
    auto self = shared_from_this();
    auto next = std::next(it);
    auto on_connect = [self, conn, results, next](const error_code& ec2) {
      if (conn->closed || conn != self->conn_) return;
      if (ec2 && next != results.end()) {
        self->connectTo(conn, results, next);
        return;
      }
      self->onTcpConnected(conn, ec2);
    };
    if (ec) {
      asio::post(io_, [on_connect, ec] { on_connect(ec); });
      return;
    }
    s.async_connect(it->endpoint(), on_connect);
  }

  bool setupTls(Conn& conn, std::string& error) {
    // A fresh context per attempt picks up renewed certificates without a restart.
    try {
      conn.tls_ctx.emplace(ssl::context::tls_client);
    } catch (const std::exception& e) {
      error = fmt::format("TLS setup: {}", e.what());
      return false;
    }
    auto& ctx = *conn.tls_ctx;
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    error_code ec;
    const auto& t = opts_.tls;
    if (t.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
      if (ec) error = fmt::format("TLS: system trust store: {}", ec.message());
    } else {
      ctx.load_verify_file(t.ca_file, ec);
      if (ec) error = fmt::format("TLS: ca_file {}: {}", t.ca_file, fileError(t.ca_file, ec));
    }
    if (!ec && !t.cert_file.empty()) {
      ctx.use_certificate_chain_file(t.cert_file, ec);
      if (ec) error = fmt::format("TLS: cert_file {}: {}", t.cert_file, fileError(t.cert_file, ec));
    }
    if (!ec && !t.key_file.empty()) {
      ctx.use_private_key_file(t.key_file, ssl::context::pem, ec);
      if (ec) error = fmt::format("TLS: key_file {}: {}", t.key_file, fileError(t.key_file, ec));
    }
    if (ec) return false;
    ctx.set_verify_mode(t.verify ? ssl::verify_peer : ssl::verify_none);
    conn.tls.emplace(io_, ctx);
    SSL* ssl = conn.tls->native_handle();
    error_code addr_ec;
    asio::ip::make_address(opts_.host, addr_ec);
    const bool is_address = !addr_ec;
    // OpenSSL's own host check (rather than a verify callback) so that a mismatch reads
    // "hostname mismatch" / "IP address mismatch" in the error.
    if (t.verify) {
      const int ok = is_address
                         ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), opts_.host.c_str())
                         : SSL_set1_host(ssl, opts_.host.c_str());
      if (ok != 1) {
        error = fmt::format("TLS: cannot verify host '{}'", opts_.host);
        return false;
      }
    }
    if (!is_address) {  // SNI only for names, never for address literals (RFC 6066)
      SSL_set_tlsext_host_name(ssl, opts_.host.c_str());
    }
    return true;
  }

  void onTcpConnected(const std::shared_ptr<Conn>& conn, const error_code& ec) {
    if (conn->closed || conn != conn_) return;
    if (ec) {
      failConnection(conn, fmt::format("connecting: {}", ec.message()));
      return;
    }
    error_code ignored;
    conn->socket().set_option(tcp::no_delay(true), ignored);
    // Synchronous reads (readAfterWait) return at once instead of waiting for data.
    conn->socket().non_blocking(true, ignored);
    if (!conn->tls) {
      sendConnect(conn);
      return;
    }
    auto self = shared_from_this();
    conn->tls->async_handshake(ssl::stream_base::client, [self, conn](const error_code& ec2) {
      if (conn->closed || conn != self->conn_) return;
      if (ec2) {
        std::string text = fmt::format("TLS handshake: {}", ec2.message());
        const long verify = SSL_get_verify_result(conn->tls->native_handle());
        if (verify != X509_V_OK) {
          text += fmt::format(" ({})", X509_verify_cert_error_string(verify));
        }
        self->failConnection(conn, text);
        return;
      }
      self->sendConnect(conn);
    });
  }

  void sendConnect(const std::shared_ptr<Conn>& conn) {
    codec::ConnectParams p;
    p.client_id = client_id_;
    p.username = opts_.username;
    p.password = opts_.password;
    p.clean_start = opts_.clean_start;
    p.keepalive_s = opts_.keepalive_s;
    p.session_expiry_s = opts_.session_expiry_s;
    p.receive_maximum = opts_.receive_maximum;
    p.maximum_packet_size = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(opts_.maximum_packet_size, codec::kMaxVarInt + 5));
    Will will;
    if (opts_.make_will && opts_.make_will(will)) p.will = &will;
    if (!codec::appendConnect(conn->pending, p)) {
      failConnection(conn, "client_id, username or password longer than 65535 bytes");
      return;
    }
    conn->rbuf.resize(std::min<std::size_t>(kInitialReadBuffer, opts_.maximum_packet_size));
    flush(conn);
    startRead(conn);
  }

  // ---- reading -------------------------------------------------------------------------------

  void startRead(const std::shared_ptr<Conn>& conn) {
    if (conn->rend == conn->rbuf.size()) conn->rbuf.resize(conn->rbuf.size() * 2);
    setLowWatermark(*conn, 1);  // an outstanding read completes with the first byte
    auto self = shared_from_this();
    auto buffer = asio::buffer(conn->rbuf.data() + conn->rend, conn->rbuf.size() - conn->rend);
    conn->withStream([&](auto& stream) {
      stream.async_read_some(
          buffer, [self, conn](const error_code& ec, std::size_t n) { self->onRead(conn, ec, n); });
    });
  }

  void onRead(const std::shared_ptr<Conn>& conn, const error_code& ec, std::size_t n) {
    if (conn->closed || conn != conn_) return;
    if (ec) {
      const bool eof = ec == asio::error::eof || ec == ssl::error::stream_truncated;
      failConnection(conn, eof ? std::string("connection closed by the broker")
                               : fmt::format("reading: {}", ec.message()));
      return;
    }
    conn->rend += n;
    conn->last_read = n;
    drain(conn);
  }

  /// Hands over the packets read, a bounded slice per turn of the loop, then reads on.
  void drain(const std::shared_ptr<Conn>& conn) {
    const Progress progress = processPackets(conn);
    if (opts_.on_turn_end) opts_.on_turn_end();
    switch (progress) {
      case Progress::kGone:
        return;
      case Progress::kYield: {
        // The rest after whatever else is ready: the next slice is posted behind it.
        ++status_.turns_yielded;
        auto self = shared_from_this();
        asio::post(io_, [self, conn] {
          if (conn->closed || conn != self->conn_) return;
          self->drain(conn);
        });
        return;
      }
      case Progress::kDone:
        break;
    }
    if (conn->last_read < kBatchReadBytes && opts_.read_batch_wait > 0) {
      // A trickle: let it accumulate in the socket so that the next wakeup takes a batch. The
      // socket's low watermark keeps the arrivals meanwhile from waking the loop (epoll is
      // edge-triggered: without it every segment the broker sends is a wakeup, issue 16).
      setLowWatermark(*conn, static_cast<int>(kBatchReadBytes));
      auto self = shared_from_this();
      // Ends with the loop's timers on the grid when one is near (ClientOptions::timer_grid).
      conn->read_wait_timer.expires_at(
          steadyAt(batchWaitDue(steadyNow(), opts_.read_batch_wait, opts_.timer_grid)));
      conn->read_wait_timer.async_wait([self, conn](const error_code& ec) {
        if (ec || conn->closed || conn != self->conn_) return;
        self->readAfterWait(conn);
      });
      return;
    }
    continueReading(conn);
  }

  /// After read_batch_wait: what accumulated is taken at once with a non-blocking read (one
  /// system call, no trip through epoll); only an empty socket waits for its next byte (and is
  /// then read from here again).
  void readAfterWait(const std::shared_ptr<Conn>& conn) {
    if (reading_paused_ || conn->tls) {
      continueReading(conn);
      return;
    }
    if (conn->rend == conn->rbuf.size()) conn->rbuf.resize(conn->rbuf.size() * 2);
    error_code ec;
    const std::size_t n = conn->plain.read_some(
        asio::buffer(conn->rbuf.data() + conn->rend, conn->rbuf.size() - conn->rend), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      // Empty: wait for its first byte without a second read first (async_read_some would try
      // one at once, issue 16), then read again from here.
      setLowWatermark(*conn, 1);
      auto self = shared_from_this();
      conn->plain.async_wait(tcp::socket::wait_read, [self, conn](const error_code& ec2) {
        if (conn->closed || conn != self->conn_) return;
        if (ec2) {
          self->failConnection(conn, fmt::format("reading: {}", ec2.message()));
          return;
        }
        self->readAfterWait(conn);
      });
      return;
    }
    onRead(conn, ec, n);
  }

  /// SO_RCVLOWAT of a plain TCP connection: epoll reports it readable (and wakes the loop)
  /// only once this many bytes wait. A non-blocking read still returns whatever is there.
  void setLowWatermark(Conn& conn, int bytes) {
    if (conn.tls || conn.low_watermark == bytes) return;
    error_code ec;
    conn.plain.set_option(asio::socket_base::receive_low_watermark(bytes), ec);
    conn.low_watermark = ec ? 1 : bytes;  // not supported: reads as before, the loop wakes more
  }

  /// Reads on, unless paused: then no read is outstanding until pauseReading(false).
  void continueReading(const std::shared_ptr<Conn>& conn) {
    if (reading_paused_) {
      conn->read_stalled = true;
      return;
    }
    startRead(conn);
  }

  enum class Progress { kDone, kYield, kGone };

  /// Handles the complete packets in the read buffer: all of them (kDone), or a turn's worth
  /// of PUBLISHes when more wait (kYield: ClientOptions::max_messages_per_turn, turn_budget);
  /// kGone when the connection went away (or the client was stopped) meanwhile.
  Progress processPackets(const std::shared_ptr<Conn>& conn) {
    const Nanos now = wallNow();
    const Nanos turn_start = opts_.turn_budget > 0 ? monoNow() : 0;
    std::size_t published = 0;
    while (true) {
      const std::string_view avail(conn->rbuf.data() + conn->rbegin, conn->rend - conn->rbegin);
      codec::FixedHeader h;
      const codec::Decode d = codec::decodeFixedHeader(avail, h);
      if (d == codec::Decode::kNeedMore) break;
      if (d == codec::Decode::kMalformed) {
        failConnection(conn, "malformed packet from the broker (fixed header)",
                       codec::reason::kMalformedPacket);
        return Progress::kGone;
      }
      if (h.packetSize() > opts_.maximum_packet_size) {
        failConnection(
            conn,
            fmt::format("{} of {} bytes from the broker exceeds maximum_packet_size {}",
                        codec::packetTypeName(h.type), h.packetSize(), opts_.maximum_packet_size),
            codec::reason::kPacketTooLarge);
        return Progress::kGone;
      }
      // Paused: the PUBLISH stays in the buffer (and the socket, and the broker's queue) until
      // the pipeline takes more; other packets (PINGRESP, SUBACK) before it are handled.
      if (reading_paused_ && h.type == codec::PacketType::kPublish) break;
      if (h.packetSize() > avail.size()) {
        if (h.packetSize() > conn->rbuf.size()) {
          compact(*conn);
          conn->rbuf.resize(h.packetSize());
        }
        break;
      }
      if (h.type == codec::PacketType::kPublish && turnSpent(published, turn_start)) {
        compact(*conn);
        return Progress::kYield;
      }
      conn->rbegin += h.packetSize();
      if (!handlePacket(conn, h, avail.substr(h.header_size, h.remaining_length), now)) {
        return Progress::kGone;
      }
      if (conn->closed || conn != conn_) return Progress::kGone;
      if (h.type == codec::PacketType::kPublish) ++published;
    }
    compact(*conn);
    return Progress::kDone;
  }

  /// Whether this turn handed over its share of PUBLISHes (the clock is read every 16).
  bool turnSpent(std::size_t published, Nanos turn_start) const {
    if (published == 0) return false;
    if (opts_.max_messages_per_turn > 0 && published >= opts_.max_messages_per_turn) return true;
    return opts_.turn_budget > 0 && published % 16 == 0 &&
           monoNow() - turn_start >= opts_.turn_budget;
  }

  static void compact(Conn& conn) {
    if (conn.rbegin == 0) return;
    const std::size_t left = conn.rend - conn.rbegin;
    if (left > 0) std::memmove(conn.rbuf.data(), conn.rbuf.data() + conn.rbegin, left);
    conn.rbegin = 0;
    conn.rend = left;
  }

  bool handlePacket(const std::shared_ptr<Conn>& conn, const codec::FixedHeader& h,
                    std::string_view body, Nanos now) {
    if (h.type != codec::PacketType::kPublish && h.flags != 0) {
      return protocolError(conn, h.type, "reserved flags set", codec::reason::kMalformedPacket);
    }
    switch (h.type) {
      case codec::PacketType::kConnack:
        if (conn->established) {
          return protocolError(conn, h.type, "second CONNACK", codec::reason::kProtocolError);
        }
        return onConnack(conn, body);
      case codec::PacketType::kPublish:
        if (!conn->established) {
          return protocolError(conn, h.type, "before CONNACK", codec::reason::kProtocolError);
        }
        return onPublish(conn, h.flags, body, now);
      case codec::PacketType::kSuback:
        return onSuback(conn, body);
      case codec::PacketType::kPuback:
        return true;  // for publish(): QoS 1 is not resent (see Client::publish)
      case codec::PacketType::kPingresp:
        conn->ping_outstanding = false;
        return true;
      case codec::PacketType::kDisconnect:
        onServerDisconnect(conn, body);
        return false;
      default:
        return protocolError(conn, h.type, "not expected by a subscriber",
                             codec::reason::kProtocolError);
    }
  }

  bool protocolError(const std::shared_ptr<Conn>& conn, codec::PacketType type,
                     std::string_view what, std::uint8_t reason) {
    failConnection(
        conn,
        fmt::format("protocol error: {} from the broker: {}", codec::packetTypeName(type), what),
        reason);
    return false;
  }

  bool onConnack(const std::shared_ptr<Conn>& conn, std::string_view body) {
    codec::Connack c;
    if (!codec::parseConnack(body, c)) {
      failConnection(conn, "malformed CONNACK from the broker");
      return false;
    }
    if (c.reason != codec::reason::kSuccess) {
      std::string text = fmt::format("broker refused the connection: {} (0x{:02x})",
                                     codec::reasonText(c.reason), c.reason);
      if (!c.reason_string.empty()) text += fmt::format(": {}", c.reason_string);
      if (!c.server_reference.empty()) text += fmt::format(" (use {})", c.server_reference);
      failConnection(conn, text);
      return false;
    }
    conn->established = true;
    conn->deadline_timer.cancel();
    conn->connected_at = monoNow();
    conn->number = ++status_.connects;
    clearSession();
    status_.session_present = c.session_present;
    if (c.has_assigned_client_id) client_id_ = std::string(c.assigned_client_id);
    conn->keepalive_s = c.has_server_keepalive ? c.server_keepalive : opts_.keepalive_s;
    conn->server_max_packet = c.maximum_packet_size;
    log::info("{}: connected as '{}' ({}, keepalive {} s)", prefix_, client_id_,
              c.session_present ? "session resumed" : "new session", conn->keepalive_s);
    if (!opts_.clean_start && opts_.session_expiry_s > 0 && !c.session_present &&
        status_.connects > 1) {
      log::warn(
          "{}: the broker had no session for '{}': QoS 1 messages published while the "
          "gateway was away were not kept",
          prefix_, client_id_);
    }
    if (c.maximum_qos == 0) {
      log::warn("{}: the broker only supports QoS 0: messages are not acknowledged", prefix_);
    }
    armKeepalive(conn);
    return subscribe(conn);
  }

  bool subscribe(const std::shared_ptr<Conn>& conn) {
    const std::span<const SubscriptionFilter> all(opts_.subscriptions);
    const std::size_t limit =
        conn->server_max_packet ? conn->server_max_packet : codec::kMaxVarInt + 5;
    // One SUBSCRIBE for everything unless the broker's Maximum Packet Size forces a split.
    std::size_t first = 0;
    while (first < all.size()) {
      std::size_t count = 1;
      while (first + count < all.size() &&
             codec::subscribePacketSize(all.subspan(first, count + 1)) <= limit) {
        ++count;
      }
      const auto part = all.subspan(first, count);
      if (codec::subscribePacketSize(part) > limit) {
        failConnection(conn, fmt::format("subscription filter '{}' does not fit the broker's "
                                         "maximum packet size {}",
                                         part[0].filter, limit));
        return false;
      }
      if (++next_packet_id_ == 0) next_packet_id_ = 1;
      if (!codec::appendSubscribe(conn->pending, next_packet_id_, part)) {
        failConnection(conn, fmt::format("subscription filter '{}' is too long", part[0].filter));
        return false;
      }
      conn->subacks.push_back({next_packet_id_, first, count});
      first += count;
    }
    flush(conn);
    if (conn->subacks.empty()) return becomeReady(conn);
    return true;
  }

  bool onSuback(const std::shared_ptr<Conn>& conn, std::string_view body) {
    codec::Suback s;
    if (!codec::parseSuback(body, s)) {
      return protocolError(conn, codec::PacketType::kSuback, "malformed",
                           codec::reason::kMalformedPacket);
    }
    const auto it = std::find_if(conn->subacks.begin(), conn->subacks.end(),
                                 [&s](const auto& p) { return p.packet_id == s.packet_id; });
    if (it == conn->subacks.end()) {
      return protocolError(conn, codec::PacketType::kSuback, "unknown packet identifier",
                           codec::reason::kProtocolError);
    }
    if (s.reason_codes.size() != it->count) {
      return protocolError(
          conn, codec::PacketType::kSuback,
          fmt::format("{} reason codes for {} filters", s.reason_codes.size(), it->count),
          codec::reason::kProtocolError);
    }
    for (std::size_t i = 0; i < it->count; ++i) {
      const auto code = static_cast<std::uint8_t>(s.reason_codes[i]);
      const SubscriptionFilter& f = opts_.subscriptions[it->first + i];
      if (code >= 0x80) {
        std::string text = fmt::format("subscription to '{}' refused by the broker: {} (0x{:02x})",
                                       f.filter, codec::reasonText(code), code);
        if (!s.reason_string.empty()) text += fmt::format(": {}", s.reason_string);
        log::error("{}: {}", prefix_, text);
        recordError(std::move(text));
      } else if (code < f.qos) {
        log::warn(
            "{}: subscription to '{}' granted QoS {} instead of {}: its messages are not "
            "acknowledged and can be lost",
            prefix_, f.filter, code, f.qos);
      }
    }
    conn->subacks.erase(it);
    if (conn->subacks.empty()) return becomeReady(conn);
    return true;
  }

  /// Reports the connection up, once. False when the handler stopped the client.
  bool becomeReady(const std::shared_ptr<Conn>& conn) {
    if (conn->ready) return true;
    conn->ready = true;
    status_.connected = true;
    if (on_state_) on_state_(true, std::string());
    return !conn->closed && conn == conn_;
  }

  bool onPublish(const std::shared_ptr<Conn>& conn, std::uint8_t flags, std::string_view body,
                 Nanos now) {
    codec::Publish p;
    if (!codec::parsePublish(flags, body, p, user_properties_)) {
      return protocolError(conn, codec::PacketType::kPublish, "malformed",
                           codec::reason::kMalformedPacket);
    }
    if (p.qos == 2) {
      return protocolError(conn, codec::PacketType::kPublish,
                           fmt::format("QoS 2 on '{}' (subscriptions are QoS 0/1)", p.topic),
                           codec::reason::kQosNotSupported);
    }
    if (p.has_topic_alias || p.topic.empty()) {
      return protocolError(conn, codec::PacketType::kPublish,
                           "topic alias although Topic Alias Maximum is 0",
                           codec::reason::kTopicAliasInvalid);
    }
    if (p.qos == 1 && !in_flight_ids_.test(p.packet_id)) {
      in_flight_ids_.set(p.packet_id);
      if (++in_flight_ > opts_.receive_maximum) {
        // The spec allows DISCONNECT 0x93 here, but Mosquitto 2.0.11 (Debian 12) overshoots
        // after PUBACKs and resends every unacked message at once on reconnect: disconnecting
        // would loop forever. Accept, and say so.
        std::uint64_t suppressed = 0;
        if (flow_limiter_.allow(monoNow(), suppressed)) {
          log::warn("{}: the broker exceeded receive_maximum {} ({} unacknowledged){}", prefix_,
                    opts_.receive_maximum, in_flight_,
                    suppressed ? fmt::format("; {} more times", suppressed) : std::string());
        }
      }
    }
    ++status_.messages;
    // A resumed session can redeliver before the SUBACK arrives; the state handler still
    // comes first (the subscriptions exist: they are part of that session).
    if (!becomeReady(conn)) return false;
    Message m;
    m.topic = p.topic;
    m.payload = p.payload;
    m.user_properties = &user_properties_;
    m.qos = p.qos;
    m.dup = p.dup;
    m.receive_time = now;
    if (on_message_) on_message_(m, AckToken{conn->number, p.packet_id});
    return !conn->closed && conn == conn_;
  }

  void onServerDisconnect(const std::shared_ptr<Conn>& conn, std::string_view body) {
    codec::Disconnect d;
    if (!codec::parseDisconnect(body, d)) {
      failConnection(conn, "broker disconnected (malformed DISCONNECT)");
      return;
    }
    std::string text =
        fmt::format("broker disconnected: {} (0x{:02x})", codec::reasonText(d.reason), d.reason);
    if (!d.reason_string.empty()) text += fmt::format(": {}", d.reason_string);
    if (!d.server_reference.empty()) text += fmt::format(" (use {})", d.server_reference);
    failConnection(conn, text);
  }

  // ---- keepalive -----------------------------------------------------------------------------

  void armKeepalive(const std::shared_ptr<Conn>& conn) {
    if (conn->keepalive_s == 0) return;
    auto self = shared_from_this();
    conn->keepalive_timer.expires_after(std::chrono::seconds(conn->keepalive_s));
    conn->keepalive_timer.async_wait([self, conn](const error_code& ec) {
      if (ec || conn->closed || conn != self->conn_) return;
      if (conn->ping_outstanding && !conn->read_stalled) {  // paused: the PINGRESP waits unread
        self->failConnection(conn, fmt::format("no PINGRESP from the broker within keepalive {} s",
                                               conn->keepalive_s));
        return;
      }
      conn->ping_outstanding = true;
      codec::appendPingreq(conn->pending);
      self->flush(conn);
      self->armKeepalive(conn);
    });
  }

  // ---- writing -------------------------------------------------------------------------------

  void flush(const std::shared_ptr<Conn>& conn) {
    if (conn->write_in_flight || conn->pending.empty() || conn->closed) return;
    std::swap(conn->pending, conn->writing);
    conn->write_in_flight = true;
    auto self = shared_from_this();
    conn->withStream([&](auto& stream) {
      asio::async_write(
          stream, asio::buffer(conn->writing),
          [self, conn](const error_code& ec, std::size_t) { self->onWrite(conn, ec); });
    });
  }

  void onWrite(const std::shared_ptr<Conn>& conn, const error_code& ec) {
    conn->write_in_flight = false;
    conn->writing.clear();
    if (conn->closed) return;
    if (ec) {
      if (conn == conn_) {
        failConnection(conn, fmt::format("writing: {}", ec.message()));
      } else {
        conn->close();
      }
      return;
    }
    if (!conn->pending.empty()) {
      flush(conn);
    } else if (conn->close_after_flush) {
      conn->close();
    }
  }

  /// Lets queued packets (PUBACKs, then DISCONNECT) go out, then closes; bounded by kCloseGrace.
  void closeAfterFlush(const std::shared_ptr<Conn>& conn) {
    conn->close_after_flush = true;
    conn->keepalive_timer.cancel();
    conn->deadline_timer.expires_after(kCloseGrace);
    conn->deadline_timer.async_wait([conn](const error_code& ec) {
      if (!ec) conn->close();
    });
    if (!conn->write_in_flight && conn->pending.empty()) {
      conn->close();
    } else {
      flush(conn);
    }
  }

  // ---- failures and reconnecting ---------------------------------------------------------

  /// Tears the current connection down (sending DISCONNECT with `disconnect_reason` when the
  /// session was established), reports `reason` and schedules a reconnect.
  void failConnection(const std::shared_ptr<Conn>& conn, std::string reason,
                      std::optional<std::uint8_t> disconnect_reason = std::nullopt) {
    if (conn->closed || conn != conn_) return;
    conn_.reset();
    status_.connected = false;
    clearSession();
    if (disconnect_reason && conn->established) {
      codec::appendDisconnect(conn->pending, *disconnect_reason);
      closeAfterFlush(conn);
    } else {
      conn->close();
    }
    if (conn->ready && monoNow() - conn->connected_at >= kStableConnection) reconnect_.reset();
    ++status_.connection_failures;
    logFailure(reason);
    recordError(reason);
    scheduleReconnect();  // before the handler: a stop() from inside it cancels the timer
    if (on_state_) on_state_(false, reason);
  }

  void clearSession() {
    // The broker redelivers unacknowledged messages on the next connection; their old tokens
    // are stale from now on.
    in_flight_ids_.reset();
    in_flight_ = 0;
  }

  void recordError(std::string text) {
    status_.last_error = std::move(text);
    status_.last_error_time = wallNow();
  }

  void logFailure(const std::string& reason) {
    std::uint64_t suppressed = 0;
    if (reason != last_logged_) {
      last_logged_ = reason;
      log_limiter_ = log::RateLimiter(kLogRepeatInterval);
      log_limiter_.allow(monoNow(), suppressed);
      log::warn("{}: {}", prefix_, reason);
    } else if (log_limiter_.allow(monoNow(), suppressed)) {
      log::warn("{}: {} (repeated {} more times)", prefix_, reason, suppressed);
    }
  }

  void scheduleReconnect() {
    if (stopped_) return;
    const Nanos delay = reconnect_.next();
    auto self = shared_from_this();
    backoff_timer_.expires_after(toChrono(delay));
    backoff_timer_.async_wait([self](const error_code& ec) {
      if (ec || self->stopped_) return;
      self->connect();
    });
  }

  asio::io_context& io_;
  ClientOptions opts_;
  Client::MessageHandler on_message_;
  Client::StateHandler on_state_;
  asio::steady_timer backoff_timer_;
  RetryPolicy reconnect_;  // the one retry policy: exponential, equal jitter
  log::RateLimiter log_limiter_;
  log::RateLimiter flow_limiter_{kLogRepeatInterval};
  std::string last_logged_;
  std::string prefix_;
  std::string client_id_;  // the broker may assign one; reused on reconnect

  std::shared_ptr<Conn> conn_;
  bool started_ = false;
  bool stopped_ = false;
  bool reading_paused_ = false;  // pauseReading(): the pipeline is behind
  std::uint16_t next_packet_id_ = 0;

  std::bitset<65536> in_flight_ids_;  // QoS 1 packet ids handed over and not yet acked
  std::uint32_t in_flight_ = 0;
  codec::UserProperties user_properties_;  // reused for every message
  ClientStatus status_;
};

class ClientHandle final : public Client {
 public:
  explicit ClientHandle(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  ~ClientHandle() override { impl_->stop(); }

  void start() override { impl_->start(); }
  void stop() override { impl_->stop(); }
  void ack(AckToken token) override { impl_->ack(token); }
  bool publish(std::string_view topic, std::string_view payload, int qos, bool retain) override {
    return impl_->publish(topic, payload, qos, retain);
  }
  void pauseReading(bool paused) override { impl_->pauseReading(paused); }
  ClientStatus status() const override { return impl_->status(); }

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace

std::unique_ptr<Client> Client::create(boost::asio::io_context& io, ClientOptions options,
                                       MessageHandler on_message, StateHandler on_state) {
  return std::make_unique<ClientHandle>(
      std::make_shared<Impl>(io, std::move(options), std::move(on_message), std::move(on_state)));
}

}  // namespace gw::mqtt
