// The CoAP source (design: "Data flow"): a server that devices PUT/POST readings to, and an
// observer (RFC 7641) of resources on devices. libcoap runs on the pipeline's event loop,
// driven by its file descriptor; no libcoap type leaks through this header.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/source.h"
#include "core/time.h"
#include "protocols/coap/coap_uri.h"
#include "protocols/payload/message_decoder.h"

namespace boost::asio {
class io_context;
}

namespace gw::coap {

using payload::PayloadOptions;

/// `[[coap.resource]]`: a path template devices PUT or POST to.
struct ResourceOptions {
  std::string path;  ///< "sensors/{device}/{metric}" (no leading '/'); '/' separates levels
  PayloadOptions payload;
};

/// A pre-shared key for DTLS (coaps://).
struct PskOptions {
  std::string identity;  ///< client identity (observer); server: the hint it offers
  std::string key;       ///< the key itself (read from the key file)
  bool enabled() const { return !key.empty(); }
};

/// `[[coap.observe]]`: one resource on a device (uri), or every resource of a device's
/// /.well-known/core that matches `filter` (discover).
struct ObserveOptions {
  std::string uri;            ///< coap://host[:port]/path, observe mode
  std::string discover;       ///< coap://host[:port], discover mode
  std::string filter;         ///< "rt=temperature" (discover; empty: every link)
  std::string device;         ///< the series' device (unless the template captures it)
  std::string metric;         ///< uri: the metric; discover: default is the last path segment
  std::string path_template;  ///< discover: captures from the discovered path (optional)
  PayloadOptions payload;
  /// A silent observation is registered again after this (a device that restarted forgot
  /// its observers; one that went quiet may have dropped us).
  Nanos reregister_after = 60 * kNanosPerSecond;
  /// discover: read /.well-known/core again this often; new matching resources are observed.
  Nanos rediscover = 600 * kNanosPerSecond;
  Nanos retry_min = kNanosPerSecond;  ///< backoff for failed registrations and discovery
  Nanos retry_max = 30 * kNanosPerSecond;
  PskOptions psk;  ///< coaps://
};

struct SourceOptions {
  bool listen = false;  ///< serve `resources` on `listen_at` (UDP)
  HostPort listen_at{"0.0.0.0", kDefaultPort};
  bool dtls_listen = false;  ///< also serve them over DTLS with `server_psk`
  HostPort dtls_listen_at{"0.0.0.0", kDefaultSecurePort};
  PskOptions server_psk;
  std::vector<ResourceOptions> resources;
  std::vector<ObserveOptions> observe;
};

/// What the pipeline does with the input. All are called on the io_context's thread.
struct Handlers {
  /// A decoded message, to be handed to the journal now. `series` is scratch the callee may
  /// change; `receive_time` is the reference (CoAP has no broker stamp).
  std::function<void(Series& series, const payload::Decoded& decoded, Nanos receive_time)> reading;
  /// Bad input (source "coap"; reason "not_json", "no_template", …; the path or URI).
  std::function<void(const BadInput& input)> bad;
  /// True while the journal cannot take more (requests are answered 5.03, retry later).
  std::function<bool()> busy;
  /// The last seq appended so far (Source::committed() compares it); empty: every request
  /// is released by the next committed() call.
  std::function<std::uint64_t()> appended;
};

struct SourceStatus {
  std::uint64_t requests = 0;       ///< PUT/POST received (including bad ones)
  std::uint64_t notifications = 0;  ///< observe notifications (and plain responses) received
  std::uint64_t deferred = 0;       ///< confirmable requests waiting for the journal commit
  std::uint64_t observations = 0;   ///< resources configured or discovered for observing
  std::uint64_t observing = 0;      ///< of those, currently registered with the device
  std::uint64_t reregistrations = 0;
};

/// Threading: every method on the io_context's thread.
class Source {
 public:
  /// Creates the libcoap context and binds the listening endpoints. Throws std::runtime_error
  /// when an endpoint cannot be bound or DTLS is asked for and not supported.
  static std::unique_ptr<Source> create(boost::asio::io_context& io, const SourceOptions& options,
                                        Handlers handlers);
  virtual ~Source() = default;

  /// Starts serving and observing.
  virtual void start() = 0;
  /// The journal is committed through `seq`: the confirmable requests held back for a reading
  /// at or below it are answered (2.04) now; later ones keep waiting.
  virtual void committed(std::uint64_t seq) = 0;
  /// Cancels observations and timers and flushes what is left to send. Safe to call twice.
  virtual void stop() = 0;
  virtual SourceStatus status() const = 0;
};

/// The link-format body of the gateway's /.well-known/core: one link per resource template,
/// `</sensors>;title="sensors/{device}/{metric}";rt="gw.reading";ct=0` (the literal prefix of
/// the template as the target, the template itself as the title, the content format as ct).
std::string wellKnownCore(const std::vector<ResourceOptions>& resources);

/// True when libcoap was built with DTLS (PSK) support.
bool dtlsSupported();

}  // namespace gw::coap
