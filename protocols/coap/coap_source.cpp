// The CoAP source on libcoap 4.3 (Debian bookworm's libcoap3).
//
// Event loop: libcoap (built with epoll) exposes one file descriptor for all of its sockets
// and its retransmission timer. The pipeline's Asio loop waits on it and calls
// coap_io_process(COAP_IO_NO_WAIT) while it is readable; an Asio timer covers the next
// internal timeout that coap_io_prepare_epoll() reports. Nothing polls.
//
// Confirmable requests are answered after the journal commit with libcoap's "separate
// response" support (coap_async): the handler registers the request as async with no delay,
// libcoap sends an empty ACK (the device stops retransmitting), the reading goes to the
// journal, and after the commit committed() triggers the async; libcoap calls the handler
// again and the 2.04 goes out as its own confirmable response. libcoap 4.3.1 has no way to
// hold back a piggybacked response, which would save the extra exchange.
#include "protocols/coap/coap_source.h"

#include <coap3/coap.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unordered_map>

#include "core/log.h"
#include "core/path_template.h"
#include "core/retry_policy.h"
#include "protocols/payload/message_decoder.h"

namespace gw::coap {
namespace {

constexpr std::uint32_t kObserveFreshWindow = 1u << 23;  // RFC 7641 3.4
constexpr Nanos kObserveFreshTime = 128 * kNanosPerSecond;
constexpr Nanos kWatchdogInterval = 200 * kNanosPerMilli;
constexpr int kMaxProcessPerWakeup = 256;  // datagrams handled before yielding to other work

// A value only its address is used of: an async whose commit is done.
char kReleased;

void logHandler(coap_log_t level, const char* message) {
  std::string_view m(message);
  while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) m.remove_suffix(1);
  if (level <= LOG_ERR)
    log::error("libcoap: {}", m);
  else if (level <= LOG_WARNING)
    log::warn("libcoap: {}", m);
  else
    log::debug("libcoap: {}", m);
}

void startupOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    coap_startup();
    coap_set_log_handler(logHandler);
    coap_set_log_level(LOG_WARNING);
  });
}

struct ContextDeleter {
  void operator()(coap_context_t* c) const { coap_free_context(c); }
};

/// Resolves host:port to a libcoap address (numeric hosts do not block; names go through
/// getaddrinfo once, at start or at a registration).
bool resolve(const HostPort& hp, bool passive, coap_address_t& out, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp.port);
  const int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    error = fmt::format("cannot resolve '{}': {}", hp.host, gai_strerror(rc));
    return false;
  }
  coap_address_init(&out);
  std::memcpy(&out.addr, res->ai_addr, res->ai_addrlen);
  out.size = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

std::string codeString(coap_pdu_code_t code) {
  return fmt::format("{}.{:02}", static_cast<int>(code) >> 5, static_cast<int>(code) & 0x1f);
}

/// The literal levels of a template before its first capture: "sensors/{device}" -> "sensors".
std::string literalPrefix(const std::string& path) {
  std::string prefix;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view level(path.data() + start, end - start);
    if (level.find('{') != std::string_view::npos || level == "#") break;
    if (!prefix.empty()) prefix += '/';
    prefix += level;
    start = end + 1;
  }
  return prefix;
}

int contentFormat(const PayloadOptions& p) {
  if (p.senml) return COAP_MEDIATYPE_APPLICATION_SENML_JSON;
  return p.decoder.format == payload::Format::kValue ? COAP_MEDIATYPE_TEXT_PLAIN
                                                     : COAP_MEDIATYPE_APPLICATION_JSON;
}

std::uint64_t tokenId(coap_bin_const_t token) {
  if (token.length != 8) return 0;
  std::uint64_t id;
  std::memcpy(&id, token.s, 8);
  return id;
}

}  // namespace

std::string wellKnownCore(const std::vector<ResourceOptions>& resources) {
  std::string body;
  for (const auto& r : resources) {
    if (!body.empty()) body += ',';
    body += fmt::format("</{}>;title=\"{}\";rt=\"gw.reading\";ct={}", literalPrefix(r.path), r.path,
                        contentFormat(r.payload));
  }
  return body;
}

bool dtlsSupported() { return coap_dtls_is_supported() != 0; }

namespace {

using PayloadReader = payload::MessageDecoder;

struct Route {
  ResourceOptions options;
  PathTemplate tmpl;
  PayloadReader reader;
};

// Config refuses retry_max < retry_min; the one retry policy needs a positive start.
RetryOptions retryOptions(const ObserveOptions& o) {
  const Nanos initial = std::max<Nanos>(1, o.retry_min);
  return {.initial = initial, .max = std::max(initial, o.retry_max)};
}

struct Observation {
  ObserveOptions options;
  Uri uri;
  std::string where;  ///< the URI, for logs and bad-input counters
  Series series;      ///< device, metric, tags
  PayloadReader reader;
  coap_session_t* session = nullptr;
  enum class State { kIdle, kRegistering, kObserving } state = State::kIdle;
  std::uint64_t token = 0;
  Nanos next_attempt = 0;  ///< monotonic
  Nanos last_heard = 0;    ///< monotonic
  bool have_seq = false;
  std::uint32_t last_seq = 0;
  Nanos last_seq_time = 0;
  bool warned_no_observe = false;
  bool announced = false;  ///< "observing" logged since the last failure

  RetryPolicy retry;  ///< failed registrations

  Observation(ObserveOptions o, Uri u)
      : options(std::move(o)),
        uri(std::move(u)),
        reader(options.payload),
        retry(retryOptions(options)) {}
};

struct Discovery {
  ObserveOptions options;
  Uri uri;
  std::string where;
  LinkFilter filter;
  bool has_filter = false;
  std::optional<PathTemplate> tmpl;
  coap_session_t* session = nullptr;
  bool pending = false, done = false;
  std::uint64_t token = 0;
  Nanos next_attempt = 0;
  RetryPolicy retry;  ///< failed discoveries

  Discovery(ObserveOptions o, Uri u)
      : options(std::move(o)), uri(std::move(u)), retry(retryOptions(options)) {}
};

class SourceImpl final : public Source {
 public:
  SourceImpl(boost::asio::io_context& io, const SourceOptions& options, Handlers handlers)
      : io_(io),
        options_(options),
        handlers_(std::move(handlers)),
        wakeup_(io),
        io_timer_(io),
        watchdog_(io),
        token_base_(std::random_device{}()) {
    startupOnce();
    ctx_.reset(coap_new_context(nullptr));
    if (!ctx_) throw std::runtime_error("coap: cannot create a libcoap context");
    coap_set_app_data(ctx_.get(), this);
    coap_context_set_block_mode(ctx_.get(), COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(ctx_.get(), &SourceImpl::onResponseThunk);
    coap_register_nack_handler(ctx_.get(), &SourceImpl::onNackThunk);

    for (const auto& r : options_.resources) {
      std::string error;
      auto tmpl = PathTemplate::parse(r.path, error);
      if (!tmpl) throw std::runtime_error(fmt::format("coap: path '{}': {}", r.path, error));
      routes_.push_back(
          std::make_unique<Route>(Route{r, std::move(*tmpl), PayloadReader(r.payload)}));
    }
    if (!routes_.empty()) setUpResources();
    if (options_.listen) listen(options_.listen_at, COAP_PROTO_UDP);
    if (options_.dtls_listen) {
      if (!dtlsSupported())
        throw std::runtime_error("coap: DTLS is not supported by this libcoap build");
      coap_dtls_spsk_t spsk{};
      spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
      spsk.psk_info.hint.s = reinterpret_cast<const uint8_t*>(options_.server_psk.identity.data());
      spsk.psk_info.hint.length = options_.server_psk.identity.size();
      spsk.psk_info.key.s = reinterpret_cast<const uint8_t*>(options_.server_psk.key.data());
      spsk.psk_info.key.length = options_.server_psk.key.size();
      if (!coap_context_set_psk2(ctx_.get(), &spsk))
        throw std::runtime_error("coap: cannot set the DTLS pre-shared key");
      listen(options_.dtls_listen_at, COAP_PROTO_DTLS);
    }
    for (const auto& o : options_.observe) {
      std::string error;
      if (!o.uri.empty()) {
        auto uri = parseUri(o.uri, error);
        if (!uri) throw std::runtime_error(fmt::format("coap: observe uri '{}': {}", o.uri, error));
        addObservation(o, *uri, o.device, o.metric, {});
      } else {
        auto uri = parseUri(o.discover, error);
        if (!uri)
          throw std::runtime_error(fmt::format("coap: discover '{}': {}", o.discover, error));
        auto d = std::make_unique<Discovery>(o, *uri);
        d->where = o.discover;
        if (!o.filter.empty()) {
          auto f = parseLinkFilter(o.filter, error);
          if (!f) throw std::runtime_error(fmt::format("coap: filter '{}': {}", o.filter, error));
          d->filter = *f;
          d->has_filter = true;
        }
        if (!o.path_template.empty()) {
          d->tmpl = PathTemplate::parse(o.path_template, error);
          if (!d->tmpl)
            throw std::runtime_error(
                fmt::format("coap: template '{}': {}", o.path_template, error));
        }
        discoveries_.push_back(std::move(d));
      }
    }

    const int fd = coap_context_get_coap_fd(ctx_.get());
    if (fd < 0) throw std::runtime_error("coap: libcoap was built without epoll support");
    // Asio gets its own descriptor for the same epoll instance: closing it leaves libcoap's.
    const int dup_fd = ::dup(fd);
    if (dup_fd < 0) throw std::runtime_error("coap: dup() of the libcoap descriptor failed");
    wakeup_.assign(dup_fd);
  }

  ~SourceImpl() override {
    stop();
    for (auto& d : deferred_) coap_session_release(d.session);
    deferred_.clear();
    for (auto& o : observations_)
      if (o->session) coap_session_release(o->session);
    for (auto& d : discoveries_)
      if (d->session) coap_session_release(d->session);
    boost::system::error_code ec;
    wakeup_.close(ec);
    ctx_.reset();
  }

  void start() override {
    running_ = true;
    const Nanos now = monoNow();
    for (auto& o : observations_) o->next_attempt = now;
    for (auto& d : discoveries_) d->next_attempt = now;
    waitReadable();
    scheduleWatchdog();
    runIo();
  }

  void committed() override {
    if (deferred_.empty()) return;
    for (auto& d : deferred_) {
      coap_bin_const_t token{d.token.size(), d.token.data()};
      if (coap_async_t* a = coap_find_async(d.session, token)) {
        coap_async_set_app_data(a, &kReleased);
        coap_async_trigger(a);
      }
      coap_session_release(d.session);
    }
    deferred_.clear();
    // Not from inside a libcoap handler (committed() may run in one, via a full batch).
    if (!run_posted_) {
      run_posted_ = true;
      postRun();
    }
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    running_ = false;
    watchdog_.cancel();
    // Let the last responses and ACKs out; cancel observations so devices stop sending.
    for (auto& o : observations_) {
      if (o->state != Observation::State::kIdle && o->session) tokens_.erase(o->token);
    }
    if (ctx_) {
      // The 2.04s released by the last commit are confirmable, and libcoap sends one at a
      // time per device (NSTART 1): keep going until nothing is left to send or ACK, for at
      // most a second (this blocks the loop, but only on shutdown or reload).
      const Nanos deadline = monoNow() + kNanosPerSecond;
      coap_io_process(ctx_.get(), COAP_IO_NO_WAIT);
      while (!coap_can_exit(ctx_.get()) && monoNow() < deadline) coap_io_process(ctx_.get(), 10);
    }
    io_timer_.cancel();
    boost::system::error_code ec;
    wakeup_.cancel(ec);
  }

  SourceStatus status() const override {
    SourceStatus s = counters_;
    s.deferred = deferred_.size();
    s.observations = observations_.size();
    s.observing = 0;
    for (const auto& o : observations_) s.observing += o->state == Observation::State::kObserving;
    return s;
  }

  std::string statsJson() const override {
    const auto s = status();
    return fmt::format(
        R"({{"requests":{},"notifications":{},"deferred":{},"observations":{},"observing":{},"reregistrations":{}}})",
        s.requests, s.notifications, s.deferred, s.observations, s.observing, s.reregistrations);
  }

 private:
  struct Deferred {
    coap_session_t* session;  // referenced
    std::vector<uint8_t> token;
  };
  struct TokenUse {
    Observation* observation = nullptr;
    Discovery* discovery = nullptr;
  };

  // ---- event loop ------------------------------------------------------------------------

  void waitReadable() {
    wakeup_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec || stopped_) return;
                         runIo();
                         waitReadable();
                       });
  }

  /// Runs runIo() soon, from the event loop (not from inside a libcoap handler). A posted
  /// handler cannot be cancelled, so it holds a weak reference: a pipeline torn down on
  /// reload before it runs leaves it doing nothing.
  void postRun() {
    boost::asio::post(io_, [alive = std::weak_ptr<SourceImpl*>(alive_)] {
      if (auto self = alive.lock()) {
        (*self)->run_posted_ = false;
        (*self)->runIo();
      }
    });
  }

  static bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
  }

  /// Processes what libcoap has ready, then arms the timer for its next internal deadline.
  void runIo() {
    if (stopped_ || !ctx_) return;
    int n = 0;
    do {
      if (coap_io_process(ctx_.get(), COAP_IO_NO_WAIT) < 0) {
        log::error("coap: coap_io_process failed");
        break;
      }
    } while (++n < kMaxProcessPerWakeup && readable(wakeup_.native_handle()));
    if (n >= kMaxProcessPerWakeup && readable(wakeup_.native_handle()) && !run_posted_) {
      // More is waiting: continue after other handlers had their turn (the commit timer).
      run_posted_ = true;
      postRun();
    }
    const unsigned next_ms = coap_io_prepare_epoll(ctx_.get(), coap_ticks_now());
    if (next_ms > 0) {
      io_timer_.expires_after(std::chrono::milliseconds(next_ms));
      io_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) runIo();
      });
    }
  }

  static coap_tick_t coap_ticks_now() {
    coap_tick_t now;
    coap_ticks(&now);
    return now;
  }

  void scheduleWatchdog() {
    watchdog_.expires_after(std::chrono::nanoseconds(kWatchdogInterval));
    watchdog_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopped_) return;
      watchdog();
      scheduleWatchdog();
    });
  }

  // ---- server ----------------------------------------------------------------------------

  void listen(const HostPort& at, coap_proto_t proto) {
    coap_address_t addr;
    std::string error;
    if (!resolve(at, true, addr, error))
      throw std::runtime_error(fmt::format("coap: listen {}: {}", at.host, error));
    coap_endpoint_t* ep = coap_new_endpoint(ctx_.get(), &addr, proto);
    if (!ep)
      throw std::runtime_error(fmt::format("coap: cannot listen on {}:{} ({}): {}", at.host,
                                           at.port, proto == COAP_PROTO_DTLS ? "dtls" : "udp",
                                           std::strerror(errno)));
    // The bound address (port 0 becomes the ephemeral port): tests and operators read it here.
    // coap_endpoint_str() gives "127.0.0.1:5683 UDP" (or DTLS).
    log::notice("coap: listening on {}",
                std::string_view(reinterpret_cast<const char*>(coap_endpoint_str(ep))));
  }

  void setUpResources() {
    // Templates cannot be libcoap resources (those have fixed paths), so the "unknown
    // resource" takes every PUT and POST and matches the path against the templates.
    coap_resource_t* r = coap_resource_unknown_init2(&SourceImpl::onRequestThunk, 0);
    coap_register_request_handler(r, COAP_REQUEST_POST, &SourceImpl::onRequestThunk);
    coap_add_resource(ctx_.get(), r);
    well_known_ = wellKnownCore(options_.resources);
    coap_resource_t* wk = coap_resource_init(coap_make_str_const(".well-known/core"), 0);
    coap_register_request_handler(wk, COAP_REQUEST_GET, &SourceImpl::onWellKnownThunk);
    coap_add_resource(ctx_.get(), wk);
  }

  static SourceImpl* self(coap_session_t* session) {
    return static_cast<SourceImpl*>(coap_get_app_data(coap_session_get_context(session)));
  }

  static void onRequestThunk(coap_resource_t*, coap_session_t* session, const coap_pdu_t* request,
                             const coap_string_t*, coap_pdu_t* response) {
    self(session)->onRequest(session, request, response);
  }

  static void onWellKnownThunk(coap_resource_t* resource, coap_session_t* session,
                               const coap_pdu_t* request, const coap_string_t* query,
                               coap_pdu_t* response) {
    self(session)->onWellKnown(resource, session, request, query, response);
  }

  void onWellKnown(coap_resource_t* resource, coap_session_t* session, const coap_pdu_t* request,
                   const coap_string_t* query, coap_pdu_t* response) {
    std::string body = well_known_;
    if (query && query->length) {  // RFC 6690 4.1 filtering, e.g. ?rt=gw.reading
      std::string error;
      auto f = parseLinkFilter(
          std::string_view(reinterpret_cast<const char*>(query->s), query->length), error);
      body.clear();
      if (f) {
        for (const auto& link : parseLinkFormat(well_known_)) {
          if (!matches(link, *f)) continue;
          // Re-serialise the matching link from the original text.
          for (const auto& r : options_.resources) {
            if ("/" + literalPrefix(r.path) != link.target) continue;
            std::string one = wellKnownCore({r});
            if (body.find(one) != std::string::npos) continue;
            if (!body.empty()) body += ',';
            body += one;
          }
        }
      }
    }
    coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
    auto* copy = new std::string(std::move(body));
    coap_add_data_large_response(
        resource, session, request, response, query, COAP_MEDIATYPE_APPLICATION_LINK_FORMAT, -1, 0,
        copy->size(), reinterpret_cast<const uint8_t*>(copy->data()),
        [](coap_session_t*, void* p) { delete static_cast<std::string*>(p); }, copy);
  }

  void respond(coap_pdu_t* response, coap_pdu_code_t code, std::string_view diagnostic) {
    coap_pdu_set_code(response, code);
    if (!diagnostic.empty())
      coap_add_data(response, diagnostic.size(),
                    reinterpret_cast<const uint8_t*>(diagnostic.data()));
  }

  void onRequest(coap_session_t* session, const coap_pdu_t* request, coap_pdu_t* response) {
    const coap_bin_const_t token = coap_pdu_get_token(request);
    if (coap_async_t* a = coap_find_async(session, token)) {
      // Either the call libcoap makes after committed() triggered the async (answer now), or
      // a retransmission of a request still waiting for its commit (another empty ACK).
      if (coap_async_get_app_data(a) == &kReleased)
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
      return;
    }
    ++counters_.requests;
    if (stopped_) {  // shutting down: the device should come back later
      uint8_t buf[4];
      coap_add_option(response, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof buf, 5), buf);
      return respond(response, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, "shutting down");
    }
    const Nanos receive_time = wallNow();
    coap_string_t* p = coap_get_uri_path(request);
    path_.assign(p ? reinterpret_cast<const char*>(p->s) : "", p ? p->length : 0);
    coap_delete_string(p);
    size_t len = 0, offset = 0, total = 0;
    const uint8_t* data = nullptr;
    if (!coap_get_data_large(request, &len, &data, &offset, &total)) len = 0;
    const std::string_view body(reinterpret_cast<const char*>(data), data ? len : 0);

    Route* route = nullptr;
    for (auto& r : routes_) {
      if (r->tmpl.match(path_, series_)) {
        route = r.get();
        break;
      }
    }
    if (!route) {
      handlers_.bad("no_template", path_, body.size());
      return respond(response, COAP_RESPONSE_CODE_NOT_FOUND, "no resource template matches");
    }
    const size_t max = route->options.payload.decoder.max_payload;
    if (body.size() > max || total > max) {
      handlers_.bad("too_large", path_, std::max(body.size(), total));
      uint8_t buf[4];
      coap_add_option(response, COAP_OPTION_SIZE1,
                      coap_encode_var_safe(buf, sizeof buf, static_cast<unsigned>(max)), buf);
      return respond(response, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE, "");
    }
    const bool confirmable = coap_pdu_get_type(request) == COAP_MESSAGE_CON;
    if (handlers_.busy()) {
      // The journal cannot commit and memory is at its bound: the device should retry.
      handlers_.bad(confirmable ? "journal_backpressure" : "journal_backpressure_non_lost", path_,
                    body.size());
      uint8_t buf[4];
      coap_add_option(response, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof buf, 1), buf);
      return respond(response, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, "journal busy");
    }
    const char* error = route->reader.decode(body, series_);
    if (error) {
      handlers_.bad(error, path_, body.size());
      return respond(response, COAP_RESPONSE_CODE_BAD_REQUEST, error);
    }
    if (route->reader.badTimestamp()) handlers_.bad("bad_timestamp", path_, body.size());
    if (confirmable) {
      // Registered before the reading goes in: a full batch commits inside ingest(), and
      // committed() must find this request then.
      coap_async_t* a = coap_register_async(session, request, 0);
      if (!a) {
        handlers_.bad("coap_async_failed", path_, body.size());
        return respond(response, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, "busy");
      }
      deferred_.push_back(Deferred{coap_session_reference(session),
                                   std::vector<uint8_t>(token.s, token.s + token.length)});
    }
    ingest(route->reader, series_, receive_time);
    if (!confirmable) coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
    // Confirmable: no code set, so libcoap sends an empty ACK; the 2.04 follows the commit.
  }

  /// Hands what the reader decoded to the pipeline. `series` holds the template's captures.
  void ingest(PayloadReader& reader, Series& series, Nanos receive_time) {
    reader.emit(series, receive_time, [this, receive_time](Series& s, const Decoded& d) {
      handlers_.reading(s, d, receive_time);
    });
  }

  // ---- observer --------------------------------------------------------------------------

  void addObservation(const ObserveOptions& o, const Uri& uri, const std::string& device,
                      const std::string& metric, const Series& captured) {
    auto obs = std::make_unique<Observation>(o, uri);
    obs->where = fmt::format("{}://{}:{}/{}", uri.secure ? "coaps" : "coap", uri.endpoint.host,
                             uri.endpoint.port, uri.pathString());
    obs->series = captured;
    if (obs->series.device.empty()) obs->series.device = device;
    if (obs->series.metric.empty()) obs->series.metric = metric;
    obs->next_attempt = monoNow();
    observations_.push_back(std::move(obs));
  }

  std::uint64_t newToken() {
    std::uint64_t t;
    do {
      t = token_base_ + ++token_counter_ * 0x9E3779B97F4A7C15ull;
    } while (t == 0 || tokens_.count(t));
    return t;
  }

  coap_session_t* sessionFor(const Uri& uri, const PskOptions& psk, std::string& error) {
    coap_address_t dst;
    if (!resolve(uri.endpoint, false, dst, error)) return nullptr;
    coap_session_t* s = nullptr;
    if (uri.secure) {
      coap_dtls_cpsk_t cpsk{};
      cpsk.version = COAP_DTLS_CPSK_SETUP_VERSION;
      cpsk.psk_info.identity.s = reinterpret_cast<const uint8_t*>(psk.identity.data());
      cpsk.psk_info.identity.length = psk.identity.size();
      cpsk.psk_info.key.s = reinterpret_cast<const uint8_t*>(psk.key.data());
      cpsk.psk_info.key.length = psk.key.size();
      s = coap_new_client_session_psk2(ctx_.get(), nullptr, &dst, COAP_PROTO_DTLS, &cpsk);
    } else {
      s = coap_new_client_session(ctx_.get(), nullptr, &dst, COAP_PROTO_UDP);
    }
    if (!s) {
      error = "cannot create a client session";
      return nullptr;
    }
    // Our own backoff and re-registration take over quickly from libcoap's retransmissions
    // (the default would keep trying a restarted device's old port for ~45 s).
    coap_session_set_ack_timeout(s, coap_fixed_point_t{1, 0});
    coap_session_set_max_retransmit(s, 2);
    return s;
  }

  /// Sends a GET (with Observe: 0 when `observe`) for `path`/`query`; returns the token or 0.
  std::uint64_t sendGet(coap_session_t* s, const std::vector<std::string>& path,
                        const std::vector<std::string>& query, bool observe,
                        std::uint64_t reuse_token = 0) {
    coap_pdu_t* pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, coap_new_message_id(s),
                                    coap_session_max_pdu_size(s));
    if (!pdu) return 0;
    const std::uint64_t token = reuse_token ? reuse_token : newToken();
    coap_add_token(pdu, 8, reinterpret_cast<const uint8_t*>(&token));
    uint8_t buf[4];
    if (observe)
      coap_add_option(pdu, COAP_OPTION_OBSERVE,
                      coap_encode_var_safe(buf, sizeof buf, COAP_OBSERVE_ESTABLISH), buf);
    for (const auto& seg : path)
      coap_add_option(pdu, COAP_OPTION_URI_PATH, seg.size(),
                      reinterpret_cast<const uint8_t*>(seg.data()));
    for (const auto& q : query)
      coap_add_option(pdu, COAP_OPTION_URI_QUERY, q.size(),
                      reinterpret_cast<const uint8_t*>(q.data()));
    if (coap_send(s, pdu) == COAP_INVALID_MID) return 0;
    return token;
  }

  void backoff(Nanos& next_attempt, RetryPolicy& retry) { next_attempt = monoNow() + retry.next(); }

  void registerObservation(Observation& o, bool again) {
    std::string error;
    if (!o.session) o.session = sessionFor(o.uri, o.options.psk, error);
    // Re-registering with the same token replaces our registration on the device instead of
    // adding a second one (RFC 7641 3.3.1); a fresh token only after a failure.
    const std::uint64_t previous = o.token;
    o.have_seq = false;
    if (o.session) o.token = sendGet(o.session, o.uri.path, o.uri.query, true, previous);
    if (previous && previous != o.token) tokens_.erase(previous);
    if (!o.token) {
      log::warn("coap: cannot observe {}: {}", o.where, error.empty() ? "send failed" : error);
      o.state = Observation::State::kIdle;
      return backoff(o.next_attempt, o.retry);
    }
    if (again) ++counters_.reregistrations;
    tokens_[o.token] = TokenUse{&o, nullptr};
    o.state = Observation::State::kRegistering;
    o.last_heard = monoNow();
  }

  void startDiscovery(Discovery& d) {
    std::string error;
    if (!d.session) d.session = sessionFor(d.uri, d.options.psk, error);
    if (d.token) tokens_.erase(d.token);
    d.token = 0;
    std::vector<std::string> query;
    if (d.has_filter) query.push_back(d.options.filter);
    if (d.session) d.token = sendGet(d.session, {".well-known", "core"}, query, false);
    if (!d.token) {
      log::warn("coap: cannot discover {}: {}", d.where, error.empty() ? "send failed" : error);
      return backoff(d.next_attempt, d.retry);
    }
    tokens_[d.token] = TokenUse{nullptr, &d};
    d.pending = true;
    d.next_attempt = monoNow() + 10 * kNanosPerSecond;  // no answer by then: ask again
  }

  void watchdog() {
    const Nanos now = monoNow();
    for (auto& d : discoveries_) {
      if (now >= d->next_attempt) startDiscovery(*d);  // also when an answer is overdue
    }
    // Index loop: discovery answers append observations.
    for (size_t i = 0; i < observations_.size(); ++i) {
      Observation& o = *observations_[i];
      switch (o.state) {
        case Observation::State::kIdle:
          if (now >= o.next_attempt)
            registerObservation(o, o.retry.failures() != 0 || o.last_heard != 0);
          break;
        case Observation::State::kRegistering:
          if (now - o.last_heard > 10 * kNanosPerSecond) {
            log::warn("coap: no answer from {} to the observe request; trying again", o.where);
            registerObservation(o, true);
          }
          break;
        case Observation::State::kObserving:
          if (now - o.last_heard > o.options.reregister_after) {
            // Normal for a value that does not change (libcoap servers send no fresh Max-Age);
            // a device that restarted and forgot us is found the same way.
            log::info("coap: {} silent for {} ms; registering again", o.where,
                      (now - o.last_heard) / kNanosPerMilli);
            registerObservation(o, true);
          }
          break;
      }
    }
  }

  static coap_response_t onResponseThunk(coap_session_t* session, const coap_pdu_t* sent,
                                         const coap_pdu_t* received, const coap_mid_t) {
    return self(session)->onResponse(received);
  }

  static void onNackThunk(coap_session_t* session, const coap_pdu_t* sent,
                          const coap_nack_reason_t reason, const coap_mid_t) {
    if (sent) self(session)->onNack(sent, reason);
  }

  void onNack(const coap_pdu_t* sent, coap_nack_reason_t reason) {
    auto it = tokens_.find(tokenId(coap_pdu_get_token(sent)));
    if (it == tokens_.end()) return;
    const TokenUse use = it->second;
    tokens_.erase(it);
    const char* why = reason == COAP_NACK_TOO_MANY_RETRIES ? "no answer"
                      : reason == COAP_NACK_RST            ? "reset"
                      : reason == COAP_NACK_TLS_FAILED     ? "DTLS handshake failed"
                                                           : "not deliverable";
    if (use.observation) {
      Observation& o = *use.observation;
      log::warn("coap: observe {}: {}; retrying", o.where, why);
      o.token = 0;
      o.state = Observation::State::kIdle;
      o.announced = false;
      backoff(o.next_attempt, o.retry);
    } else if (use.discovery) {
      Discovery& d = *use.discovery;
      log::warn("coap: discover {}: {}; retrying", d.where, why);
      d.token = 0;
      d.pending = false;
      backoff(d.next_attempt, d.retry);
    }
  }

  coap_response_t onResponse(const coap_pdu_t* received) {
    auto it = tokens_.find(tokenId(coap_pdu_get_token(received)));
    // A stale observation, or we are shutting down: the RST cancels it on the device.
    if (it == tokens_.end() || stopped_) return COAP_RESPONSE_FAIL;
    const TokenUse use = it->second;
    if (use.discovery) {
      onDiscovered(*use.discovery, received);
      return COAP_RESPONSE_OK;
    }
    Observation& o = *use.observation;
    const coap_pdu_code_t code = coap_pdu_get_code(received);
    const Nanos now = monoNow();
    if ((static_cast<int>(code) >> 5) != 2) {
      log::warn("coap: observe {}: the device answered {}; retrying", o.where, codeString(code));
      tokens_.erase(it);
      o.token = 0;
      o.state = Observation::State::kIdle;
      o.announced = false;
      backoff(o.next_attempt, o.retry);
      return COAP_RESPONSE_OK;
    }
    coap_opt_iterator_t opt_iter;
    const coap_opt_t* opt = coap_check_option(received, COAP_OPTION_OBSERVE, &opt_iter);
    if (opt) {
      const std::uint32_t seq = coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
      if (o.have_seq) {
        const std::uint32_t v1 = o.last_seq, v2 = seq;
        const bool fresh = (v1 < v2 && v2 - v1 < kObserveFreshWindow) ||
                           (v1 > v2 && v1 - v2 > kObserveFreshWindow) ||
                           now > o.last_seq_time + kObserveFreshTime;
        if (!fresh) return COAP_RESPONSE_OK;  // reordered: an older state than we have
      }
      o.have_seq = true;
      o.last_seq = seq;
      o.last_seq_time = now;
      if (o.state != Observation::State::kObserving && !o.announced)
        log::notice("coap: observing {} ({} {})", o.where, o.series.device, o.series.metric);
      o.announced = true;
      o.state = Observation::State::kObserving;
    } else {
      // The device does not keep us as an observer: read it again after reregister_after.
      if (!o.warned_no_observe)
        log::warn("coap: {} does not support observe; reading it every {} ms", o.where,
                  o.options.reregister_after / kNanosPerMilli);
      o.warned_no_observe = true;
      tokens_.erase(it);
      o.token = 0;
      o.state = Observation::State::kIdle;
      o.next_attempt = now + o.options.reregister_after;
    }
    o.retry.reset();
    o.last_heard = now;
    ++counters_.notifications;

    size_t len = 0, offset = 0, total = 0;
    const uint8_t* data = nullptr;
    if (!coap_get_data_large(received, &len, &data, &offset, &total)) len = 0;
    const std::string_view body(reinterpret_cast<const char*>(data), data ? len : 0);
    if (handlers_.busy()) {
      handlers_.bad("journal_backpressure_notification_lost", o.where, body.size());
      return COAP_RESPONSE_OK;
    }
    if (body.size() > o.reader.options().decoder.max_payload) {
      handlers_.bad("too_large", o.where, body.size());
      return COAP_RESPONSE_OK;
    }
    const char* error = o.reader.decode(body, o.series);
    if (error) {
      handlers_.bad(error, o.where, body.size());
      return COAP_RESPONSE_OK;
    }
    if (o.reader.badTimestamp()) handlers_.bad("bad_timestamp", o.where, body.size());
    obs_series_ = o.series;
    ingest(o.reader, obs_series_, wallNow());
    return COAP_RESPONSE_OK;
  }

  void onDiscovered(Discovery& d, const coap_pdu_t* received) {
    tokens_.erase(d.token);
    d.token = 0;
    d.pending = false;
    const coap_pdu_code_t code = coap_pdu_get_code(received);
    if (code != COAP_RESPONSE_CODE_CONTENT) {
      log::warn("coap: discover {}: the device answered {}; retrying", d.where, codeString(code));
      return backoff(d.next_attempt, d.retry);
    }
    size_t len = 0, offset = 0, total = 0;
    const uint8_t* data = nullptr;
    if (!coap_get_data_large(received, &len, &data, &offset, &total)) len = 0;
    const std::string_view body(reinterpret_cast<const char*>(data), data ? len : 0);
    size_t added = 0;
    for (const auto& link : parseLinkFormat(body)) {
      // Devices may ignore the query filter (it is optional in RFC 6690): filter here too.
      if (d.has_filter && !matches(link, d.filter)) continue;
      std::string target = link.target;
      if (target.rfind("coap", 0) == 0) continue;  // a link to another host: not ours to follow
      if (!target.empty() && target.front() == '/') target.erase(0, 1);
      if (target == ".well-known/core") continue;
      Series captured;
      if (d.tmpl && !d.tmpl->match(target, captured)) continue;
      Uri uri = d.uri;
      uri.query.clear();
      std::string error;
      auto parsed = parseUri(fmt::format("coap://x/{}", target), error);
      if (!parsed) continue;
      uri.path = parsed->path;
      uri.query = parsed->query;
      bool known = false;
      for (const auto& o : observations_) {
        known |= o->uri.endpoint.host == uri.endpoint.host &&
                 o->uri.endpoint.port == uri.endpoint.port && o->uri.path == uri.path;
      }
      if (known) continue;
      const std::string metric =
          !d.options.metric.empty() ? d.options.metric : (uri.path.empty() ? "" : uri.path.back());
      addObservation(d.options, uri, d.options.device, metric, captured);
      ++added;
    }
    if (added > 0 || !d.done)
      log::notice("coap: discovered {} resource(s) to observe on {}{}", added, d.where,
                  d.has_filter ? fmt::format(" matching {}", d.options.filter) : "");
    d.done = true;
    d.retry.reset();
    d.next_attempt = monoNow() + d.options.rediscover;
  }

  boost::asio::io_context& io_;
  SourceOptions options_;
  Handlers handlers_;
  std::unique_ptr<coap_context_t, ContextDeleter> ctx_;
  boost::asio::posix::stream_descriptor wakeup_;
  boost::asio::steady_timer io_timer_, watchdog_;
  std::vector<std::unique_ptr<Route>> routes_;
  std::vector<std::unique_ptr<Observation>> observations_;
  std::vector<std::unique_ptr<Discovery>> discoveries_;
  std::unordered_map<std::uint64_t, TokenUse> tokens_;
  std::vector<Deferred> deferred_;
  std::string well_known_;
  std::uint64_t token_base_, token_counter_ = 0;
  bool running_ = false, stopped_ = false, run_posted_ = false;
  std::shared_ptr<SourceImpl*> alive_ = std::make_shared<SourceImpl*>(this);
  SourceStatus counters_;
  // Scratch reused for every message.
  std::string path_;
  Series series_, obs_series_;
};

}  // namespace

std::unique_ptr<Source> Source::create(boost::asio::io_context& io, const SourceOptions& options,
                                       Handlers handlers) {
  return std::make_unique<SourceImpl>(io, options, std::move(handlers));
}

}  // namespace gw::coap
