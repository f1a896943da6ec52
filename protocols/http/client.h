// The one HTTP client (design: "Components"), used by the notifiers and the time-series sink:
// one reusable connection per client (keep-alive), a connect timeout besides the total one,
// TLS verification always on with an optional extra CA bundle, the Retry-After header parsed,
// secrets scrubbed from every error text, and an interrupt for shutdown. No libcurl type
// appears here.
//
// Threading: one request at a time (the owner's worker thread); interrupt() from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace gw::http {

struct ClientOptions {
  std::string url;
  /// "Name: value" lines sent with every request. Their values are treated as secrets (tokens,
  /// API keys): scrubbed from errors.
  std::vector<std::string> headers;
  std::string content_type = "application/json";
  std::string accept = "application/json";  ///< empty: no Accept header
  std::string content_encoding;             ///< e.g. "gzip" when the body is compressed
  Nanos timeout = 10 * kNanosPerSecond;     ///< the whole request
  Nanos connect_timeout = 5 * kNanosPerSecond;
  std::string ca_file;                ///< extra CA bundle; empty = the system's
  bool url_path_is_secret = false;    ///< webhooks: Slack-style URLs carry a token in the path
  std::function<Nanos()> wall_clock;  ///< for Retry-After dates; wallNow when empty
};

struct Response {
  bool transport_ok = false;  ///< false: connection/TLS/timeout error or interrupt, see `error`
  long status = 0;
  std::string body;  ///< the first 64 KiB
  /// The Retry-After header as a delay from now (an HTTP-date is turned into one), if the
  /// server sent a valid one. Not capped here: the retry policy caps it.
  std::optional<Nanos> retry_after;
  std::string error;  ///< transport errors only; secrets scrubbed
};

/// How an HTTP status is handled by every user of the client:
///   2xx → kSuccess;
///   429, 5xx, 408, 401/403/404 (a config or server problem, not the request's), 1xx/3xx
///   (not followed) → kRetry;
///   other 4xx → kPermanent (the request itself is refused).
/// Callers may single out statuses first (the time-series sink splits on 413).
enum class StatusClass { kSuccess, kRetry, kPermanent };
StatusClass classifyStatus(long status);

/// A server message cut to a loggable size (300 bytes, whitespace trimmed, never splitting a
/// UTF-8 sequence; "…" marks a cut).
std::string trimMessage(std::string_view s);

/// An http(s) URL taken apart by libcurl's URL API (the one URL parser of the HTTP users).
struct UrlParts {
  std::string safe;            ///< scheme://host[:port][/path]: no user info, query or fragment
  std::string path;            ///< as given ("/write")
  std::string query;           ///< without '?'; may carry credentials
  std::string user, password;  ///< user info, if any (secrets)
};
/// Nullopt, with `error` set, when `url` is not a valid http:// or https:// URL. With
/// `path_is_secret` the path is shown as "/…" in `safe` (webhook tokens).
std::optional<UrlParts> parseHttpUrl(std::string_view url, bool path_is_secret, std::string& error);

class Client {
 public:
  /// Throws std::runtime_error (start-up/reload only) on a URL that is not http(s), a header
  /// with a line break, or when libcurl cannot be set up. `who` prefixes those messages
  /// ("pagerduty", "timeseries").
  Client(std::string who, const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// POSTs `body`. Blocks until the answer, a timeout or interrupt().
  Response post(std::string_view body);
  /// Opens a new connection to the URL's host (TCP, and the TLS handshake with certificate
  /// verification for https) without sending a request, within min(connect timeout,
  /// `timeout`), then closes it: a light connectivity check. transport_ok and error as for
  /// post(); status stays 0.
  Response probe(Nanos timeout);
  /// Sticky: the transfer in progress and every later one fail at once (shutdown). The
  /// transfer in progress is woken up, so post() returns within milliseconds.
  void interrupt();

  /// The URL for messages: scheme://host[:port][/path] (never the query or user info; the
  /// path is left out when it is secret).
  const std::string& safeUrl() const { return safe_url_; }
  /// Text that must never appear in an error (routing key, header values). Values shorter than
  /// 8 characters are ignored: not plausible secrets, and they would garble ordinary words.
  void addSecret(std::string secret);
  /// Replaces every secret in `text` by "<redacted>".
  void scrub(std::string& text) const;

 private:
  struct Curl;
  static std::size_t onBody(char* data, std::size_t size, std::size_t n, void* self);
  static std::size_t onHeader(char* data, std::size_t size, std::size_t n, void* self);
  /// Runs the transfer on the multi handle until done or interrupted; a CURLcode as int.
  int perform(void* easy);
  /// "url: curl's message (the OS error)", secrets scrubbed.
  std::string transportError(void* easy, int code) const;
  Nanos now() const;

  std::string who_;
  std::string safe_url_;
  std::vector<std::string> secrets_;
  std::function<Nanos()> clock_;
  std::unique_ptr<Curl> curl_;
  Response response_;
  std::optional<std::string> retry_after_header_;
  std::atomic<bool> interrupted_{false};
};

}  // namespace gw::http
