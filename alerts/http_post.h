// libcurl plumbing shared by the PagerDuty and webhook notifiers (internal to alerts/): one
// reusable easy handle per notifier (keep-alive), TLS verification on, every curl code checked,
// the status mapped to a DeliveryResult the same way for both.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alerts/notifier.h"
#include "core/time.h"

namespace gw::alerts::detail {

struct HttpOptions {
  std::string url;
  std::vector<std::string> headers;  ///< "Name: value" lines, besides Content-Type and User-Agent
  Nanos timeout = 10 * kNanosPerSecond;
  Nanos connect_timeout = 5 * kNanosPerSecond;
  std::string ca_file;                ///< extra CA bundle; empty = the system's
  bool url_path_is_secret = false;    ///< webhooks: Slack-style URLs carry a token in the path
  std::function<Nanos()> wall_clock;  ///< for Retry-After dates; wallNow when empty
};

struct HttpResponse {
  bool transport_ok = false;  ///< false: connection/TLS/timeout error, see `error`
  long status = 0;
  std::string body;                        ///< the first 64 KiB
  std::optional<std::string> retry_after;  ///< the Retry-After header, if any
  std::string error;
};

class HttpPoster {
 public:
  /// Throws std::runtime_error (start-up/reload only) on a URL that is not http(s), or when
  /// libcurl cannot be set up. `who` prefixes messages ("pagerduty").
  HttpPoster(std::string who, const HttpOptions& options);
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  /// POSTs `body` as application/json. Secrets added with addSecret() are scrubbed from
  /// `error`.
  HttpResponse post(std::string_view body);
  /// Sticky: the transfer in progress and every later one fail at once (shutdown).
  void interrupt() { interrupted_.store(true); }

  /// The URL for messages: scheme://host[:port][/path] (path left out when it is secret).
  const std::string& safeUrl() const { return safe_url_; }
  /// Text that must never appear in an error (routing key, header values).
  void addSecret(std::string secret);
  /// Replaces every secret in `text` by "<redacted>".
  void scrub(std::string& text) const;
  Nanos now() const;

 private:
  struct Curl;
  static std::size_t onBody(char* data, std::size_t size, std::size_t n, void* self);
  static std::size_t onHeader(char* data, std::size_t size, std::size_t n, void* self);
  static int onProgress(void* self, long long, long long, long long, long long);

  std::string who_;
  std::string safe_url_;
  std::vector<std::string> secrets_;
  std::function<Nanos()> clock_;
  std::unique_ptr<Curl> curl_;
  HttpResponse response_;
  std::atomic<bool> interrupted_{false};
};

/// The shared status rules:
///   2xx → delivered; 429, 5xx, 408, 401/403/404 (a config problem, not the event's), 1xx/3xx
///   and transport errors → retry (with Retry-After when sent); other 4xx → permanent.
/// `server_message` is what the error text quotes from the response.
DeliveryResult classify(const HttpPoster& poster, const HttpResponse& response,
                        std::string_view server_message);

}  // namespace gw::alerts::detail
