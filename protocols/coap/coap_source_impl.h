// Internal to gw_coap: the one class behind coap::Source. Its definition is split by role:
// coap_source.cpp (construction, the event loop, commit and stop), coap_server.cpp (the
// resources devices PUT/POST to, deferred 2.04s) and coap_observer.cpp (observations,
// discovery, re-registration). Not a public header: libcoap and Asio types are used freely.
#pragma once

#include <coap3/coap.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/path_template.h"
#include "core/retry_policy.h"
#include "protocols/coap/coap_source.h"
#include "protocols/coap/coap_uri.h"
#include "protocols/payload/message_decoder.h"

namespace gw::coap::detail {

// A value only its address is used of: an async whose commit is done.
inline char kReleased;

struct ContextDeleter {
  void operator()(coap_context_t* c) const { coap_free_context(c); }
};

/// Resolves host:port to a libcoap address (numeric hosts do not block; names go through
/// getaddrinfo once, at start or at a registration).
bool resolve(const HostPort& hp, bool passive, coap_address_t& out, std::string& error);

using PayloadReader = payload::MessageDecoder;

struct Route {
  ResourceOptions options;
  PathTemplate tmpl;
  PayloadReader reader;
};

// Config refuses retry_max < retry_min; the one retry policy needs a positive start.
inline RetryOptions retryOptions(const ObserveOptions& o) {
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
  SourceImpl(boost::asio::io_context& io, const SourceOptions& options, Handlers handlers);
  ~SourceImpl() override;

  void start() override;
  void committed(std::uint64_t seq) override;
  /// Answers the deferred requests whose readings are committed (seq <= committed_seq_).
  void releaseCommitted();
  void stop() override;
  SourceStatus status() const override;

 private:
  struct Deferred {
    coap_session_t* session;  // referenced
    std::vector<uint8_t> token;
    /// The last seq appended with its readings: answered once committed() reaches it
    /// (kPendingSeq while its readings are still going in).
    std::uint64_t seq = kPendingSeq;
  };
  static constexpr std::uint64_t kPendingSeq = ~std::uint64_t{0};
  struct TokenUse {
    Observation* observation = nullptr;
    Discovery* discovery = nullptr;
  };

  // ---- event loop (coap_source.cpp) -------------------------------------------------------

  void waitReadable();
  /// Runs runIo() soon, from the event loop (not from inside a libcoap handler). A posted
  /// handler cannot be cancelled, so it holds a weak reference: a pipeline torn down on
  /// reload before it runs leaves it doing nothing.
  void postRun();
  static bool readable(int fd);
  /// Processes what libcoap has ready, then arms the timer for its next internal deadline.
  void runIo();
  static coap_tick_t coap_ticks_now();
  void scheduleWatchdog();
  static SourceImpl* self(coap_session_t* session);

  // ---- server (coap_server.cpp) -----------------------------------------------------------

  void listen(const HostPort& at, coap_proto_t proto);
  void setUpResources();
  static void onRequestThunk(coap_resource_t*, coap_session_t* session, const coap_pdu_t* request,
                             const coap_string_t*, coap_pdu_t* response);
  static void onWellKnownThunk(coap_resource_t* resource, coap_session_t* session,
                               const coap_pdu_t* request, const coap_string_t* query,
                               coap_pdu_t* response);
  void onWellKnown(coap_resource_t* resource, coap_session_t* session, const coap_pdu_t* request,
                   const coap_string_t* query, coap_pdu_t* response);
  void respond(coap_pdu_t* response, coap_pdu_code_t code, std::string_view diagnostic);
  void onRequest(coap_session_t* session, const coap_pdu_t* request, coap_pdu_t* response);
  /// Hands what the reader decoded to the pipeline. `series` holds the template's captures.
  void ingest(PayloadReader& reader, Series& series, Nanos receive_time);

  // ---- observer (coap_observer.cpp) -------------------------------------------------------

  void addObservation(const ObserveOptions& o, const Uri& uri, const std::string& device,
                      const std::string& metric, const Series& captured);
  std::uint64_t newToken();
  coap_session_t* sessionFor(const Uri& uri, const PskOptions& psk, std::string& error);
  /// Sends a GET (with Observe: 0 when `observe`) for `path`/`query`; returns the token or 0.
  std::uint64_t sendGet(coap_session_t* s, const std::vector<std::string>& path,
                        const std::vector<std::string>& query, bool observe,
                        std::uint64_t reuse_token = 0);
  void backoff(Nanos& next_attempt, RetryPolicy& retry);
  void registerObservation(Observation& o, bool again);
  void startDiscovery(Discovery& d);
  void watchdog();
  static coap_response_t onResponseThunk(coap_session_t* session, const coap_pdu_t* sent,
                                         const coap_pdu_t* received, const coap_mid_t);
  static void onNackThunk(coap_session_t* session, const coap_pdu_t* sent,
                          const coap_nack_reason_t reason, const coap_mid_t);
  void onNack(const coap_pdu_t* sent, coap_nack_reason_t reason);
  coap_response_t onResponse(const coap_pdu_t* received);
  void onDiscovered(Discovery& d, const coap_pdu_t* received);

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
  std::uint64_t committed_seq_ = 0;  ///< the highest seq committed() was given
  std::string well_known_;
  std::uint64_t token_base_, token_counter_ = 0;
  bool running_ = false, stopped_ = false, run_posted_ = false;
  std::shared_ptr<SourceImpl*> alive_ = std::make_shared<SourceImpl*>(this);
  SourceStatus counters_;
  // Scratch reused for every message.
  std::string path_;
  Series series_, obs_series_;
};

}  // namespace gw::coap::detail
