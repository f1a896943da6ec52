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
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>

#include "core/log.h"
#include "protocols/coap/coap_source_impl.h"

namespace gw::coap {
namespace detail {
namespace {

constexpr Nanos kWatchdogInterval = 200 * kNanosPerMilli;
constexpr int kMaxProcessPerWakeup = 256;  // datagrams handled before yielding to other work

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

}  // namespace

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

SourceImpl::SourceImpl(boost::asio::io_context& io, const SourceOptions& options, Handlers handlers)
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
      if (!uri) throw std::runtime_error(fmt::format("coap: discover '{}': {}", o.discover, error));
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
          throw std::runtime_error(fmt::format("coap: template '{}': {}", o.path_template, error));
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

SourceImpl::~SourceImpl() {
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

void SourceImpl::start() {
  running_ = true;
  const Nanos now = monoNow();
  for (auto& o : observations_) o->next_attempt = now;
  for (auto& d : discoveries_) d->next_attempt = now;
  waitReadable();
  scheduleWatchdog();
  runIo();
}

void SourceImpl::committed(std::uint64_t seq) {
  committed_seq_ = std::max(committed_seq_, seq);
  releaseCommitted();
}

void SourceImpl::releaseCommitted() {
  // A commit notice can come while later requests' readings are appended but not yet committed
  // (e.g. the WAL sync of the commit before them): those keep waiting for theirs.
  const auto waiting = std::stable_partition(
      deferred_.begin(), deferred_.end(),
      [&](const Deferred& d) { return d.seq == kPendingSeq || d.seq > committed_seq_; });
  if (waiting == deferred_.end()) return;
  for (auto it = waiting; it != deferred_.end(); ++it) {
    coap_bin_const_t token{it->token.size(), it->token.data()};
    if (coap_async_t* a = coap_find_async(it->session, token)) {
      coap_async_set_app_data(a, &kReleased);
      coap_async_trigger(a);
    }
    coap_session_release(it->session);
  }
  deferred_.erase(waiting, deferred_.end());
  // Not from inside a libcoap handler (committed() may run in one, via a full batch).
  if (!run_posted_) {
    run_posted_ = true;
    postRun();
  }
}

void SourceImpl::stop() {
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

SourceStatus SourceImpl::status() const {
  SourceStatus s = counters_;
  s.deferred = deferred_.size();
  s.observations = observations_.size();
  s.observing = 0;
  for (const auto& o : observations_) s.observing += o->state == Observation::State::kObserving;
  return s;
}

void SourceImpl::waitReadable() {
  wakeup_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (ec || stopped_) return;
                       runIo();
                       waitReadable();
                     });
}

void SourceImpl::postRun() {
  boost::asio::post(io_, [alive = std::weak_ptr<SourceImpl*>(alive_)] {
    if (auto self = alive.lock()) {
      (*self)->run_posted_ = false;
      (*self)->runIo();
    }
  });
}

bool SourceImpl::readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

void SourceImpl::runIo() {
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

coap_tick_t SourceImpl::coap_ticks_now() {
  coap_tick_t now;
  coap_ticks(&now);
  return now;
}

void SourceImpl::scheduleWatchdog() {
  watchdog_.expires_after(std::chrono::nanoseconds(kWatchdogInterval));
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    watchdog();
    scheduleWatchdog();
  });
}

SourceImpl* SourceImpl::self(coap_session_t* session) {
  return static_cast<SourceImpl*>(coap_get_app_data(coap_session_get_context(session)));
}

}  // namespace detail

bool dtlsSupported() { return coap_dtls_is_supported() != 0; }

std::unique_ptr<Source> Source::create(boost::asio::io_context& io, const SourceOptions& options,
                                       Handlers handlers) {
  return std::make_unique<detail::SourceImpl>(io, options, std::move(handlers));
}

}  // namespace gw::coap
