#include "protocols/http/client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "core/retry_policy.h"
#include "protocols/http/curl_util.h"

#ifndef GW_VERSION
#define GW_VERSION "dev"
#endif

namespace gw::http {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

// The easy handle runs on a multi handle (rather than curl_easy_perform) only so that
// interrupt() can wake a transfer at once with curl_multi_wakeup: a progress callback is
// called about once a second on an idle connection, which is how long shutdown would wait.
// The multi handle keeps the connection cache, so keep-alive works across requests.
struct Client::Curl {
  CurlMulti multi;
  CurlEasy easy;
  CurlEasy probe;  // CONNECT_ONLY copy of `easy` (same URL, TLS and timeouts)
  Nanos connect_timeout = 0;
  CurlSlist headers;
  char errbuf[CURL_ERROR_SIZE] = {};
};

std::optional<UrlParts> parseHttpUrl(std::string_view text, bool path_is_secret,
                                     std::string& error) {
  CurlUrl u(curl_url());
  if (!u) {
    error = "out of memory";
    return std::nullopt;
  }
  const std::string copy(text);
  if (const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, copy.c_str(), 0); rc != CURLUE_OK) {
    error = fmt::format("invalid url: {}", curl_url_strerror(rc));
    return std::nullopt;
  }
  auto part = [&](CURLUPart p) {
    char* s = nullptr;
    if (curl_url_get(u.get(), p, &s, 0) != CURLUE_OK || s == nullptr) return std::string();
    std::string v(s);
    curl_free(s);
    return v;
  };
  const std::string scheme = part(CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https") {
    error = "url must be http:// or https://";
    return std::nullopt;
  }
  UrlParts out;
  out.path = part(CURLUPART_PATH);
  out.query = part(CURLUPART_QUERY);
  out.user = part(CURLUPART_USER);
  out.password = part(CURLUPART_PASSWORD);
  out.safe = scheme + "://" + part(CURLUPART_HOST);
  if (const std::string port = part(CURLUPART_PORT); !port.empty()) out.safe += ":" + port;
  if (!path_is_secret)
    out.safe += out.path;
  else if (out.path.size() > 1)
    out.safe += "/…";
  return out;
}

Client::Client(std::string who, const ClientOptions& options)
    : who_(std::move(who)), clock_(options.wall_clock), curl_(std::make_unique<Curl>()) {
  globalInit(who_);
  std::string error;
  auto url = parseHttpUrl(options.url, options.url_path_is_secret, error);
  if (!url) throw std::runtime_error(fmt::format("{}: {}", who_, error));
  safe_url_ = url->safe;
  if (options.url_path_is_secret && url->path.size() > 1) addSecret(url->path);
  // A query may carry credentials (InfluxDB 1.x: ?u=&p=; webhook tokens).
  if (!url->query.empty()) addSecret(url->query);
  if (!url->user.empty()) addSecret(url->user);
  if (!url->password.empty()) addSecret(url->password);

  curl_->multi.reset(curl_multi_init());
  if (!curl_->multi) throw std::runtime_error(who_ + ": curl_multi_init failed");
  curl_->easy.reset(curl_easy_init());
  if (!curl_->easy) throw std::runtime_error(who_ + ": curl_easy_init failed");

  auto add_header = [&](const std::string& h) {
    if (h.find_first_of("\r\n") != std::string::npos)
      throw std::runtime_error(who_ + ": a header contains a line break");
    curl_slist* l = curl_slist_append(curl_->headers.get(), h.c_str());
    if (!l) throw std::runtime_error(who_ + ": curl_slist_append failed");
    (void)curl_->headers.release();
    curl_->headers.reset(l);
  };
  add_header("Content-Type: " + options.content_type);
  if (!options.accept.empty()) add_header("Accept: " + options.accept);
  if (!options.content_encoding.empty())
    add_header("Content-Encoding: " + options.content_encoding);
  add_header("Expect:");  // no 100-continue round trip for large bodies
  for (const std::string& h : options.headers) {
    add_header(h);
    if (const auto colon = h.find(':'); colon != std::string::npos) {
      std::string_view value = std::string_view(h).substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      addSecret(std::string(value));
    }
  }

  auto setopt = [&](CURLoption option, auto value) {
    if (const CURLcode rc = curl_easy_setopt(curl_->easy.get(), option, value); rc != CURLE_OK)
      throw std::runtime_error(fmt::format("{}: curl_easy_setopt({}): {}", who_,
                                           static_cast<int>(option), curl_easy_strerror(rc)));
  };
  setopt(CURLOPT_URL, options.url.c_str());
  setopt(CURLOPT_POST, 1L);
  setopt(CURLOPT_HTTPHEADER, curl_->headers.get());
  setopt(CURLOPT_USERAGENT, "iot-gateway/" GW_VERSION);
  setopt(CURLOPT_WRITEFUNCTION, &Client::onBody);
  setopt(CURLOPT_WRITEDATA, this);
  setopt(CURLOPT_HEADERFUNCTION, &Client::onHeader);
  setopt(CURLOPT_HEADERDATA, this);
  setopt(CURLOPT_ERRORBUFFER, curl_->errbuf);
  setopt(CURLOPT_TIMEOUT_MS,
         static_cast<long>(std::max<Nanos>(1, options.timeout / kNanosPerMilli)));
  setopt(CURLOPT_CONNECTTIMEOUT_MS,
         static_cast<long>(std::max<Nanos>(1, options.connect_timeout / kNanosPerMilli)));
  setopt(CURLOPT_NOSIGNAL, 1L);
  setopt(CURLOPT_TCP_KEEPALIVE, 1L);
  setopt(CURLOPT_FOLLOWLOCATION, 0L);
  // Verification is libcurl's default; set it anyway so nobody can lose it by accident.
  setopt(CURLOPT_SSL_VERIFYPEER, 1L);
  setopt(CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options.ca_file.empty()) setopt(CURLOPT_CAINFO, options.ca_file.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500
  setopt(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  setopt(CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_->connect_timeout = std::max<Nanos>(kNanosPerMilli, options.connect_timeout);
  curl_->probe.reset(curl_easy_duphandle(curl_->easy.get()));
  if (!curl_->probe) throw std::runtime_error(who_ + ": curl_easy_duphandle failed");
  if (curl_easy_setopt(curl_->probe.get(), CURLOPT_CONNECT_ONLY, 1L) != CURLE_OK)
    throw std::runtime_error(who_ + ": curl_easy_setopt(CONNECT_ONLY) failed");
}

Client::~Client() = default;

void Client::addSecret(std::string secret) {
  // Shorter values are not plausible secrets and would garble ordinary words in messages.
  if (secret.size() >= 8) secrets_.push_back(std::move(secret));
}

void Client::scrub(std::string& text) const {
  for (const std::string& s : secrets_) {
    for (auto pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos + 10))
      text.replace(pos, s.size(), "<redacted>");
  }
}

Nanos Client::now() const { return clock_ ? clock_() : wallNow(); }

std::size_t Client::onBody(char* data, std::size_t size, std::size_t n, void* p) {
  auto* self = static_cast<Client*>(p);
  const std::size_t bytes = size * n;
  std::string& body = self->response_.body;
  body.append(data, std::min(bytes, kMaxResponseBytes - std::min(kMaxResponseBytes, body.size())));
  return bytes;  // drop the rest but keep the connection usable
}

std::size_t Client::onHeader(char* data, std::size_t size, std::size_t n, void* p) {
  auto* self = static_cast<Client*>(p);
  const std::size_t bytes = size * n;
  std::string_view line(data, bytes);
  if (line.rfind("HTTP/", 0) == 0) {
    self->retry_after_header_.reset();  // a new header block (after 100 Continue)
  } else if (const auto colon = line.find(':');
             colon != std::string_view::npos && iequals(line.substr(0, colon), "retry-after")) {
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
      v.remove_suffix(1);
    self->retry_after_header_ = std::string(v.substr(0, 64));
  }
  return bytes;
}

void Client::interrupt() {
  interrupted_.store(true);
  // Thread-safe; wakes the current curl_multi_poll, or the next one when none is running.
  (void)curl_multi_wakeup(curl_->multi.get());
}

int Client::perform(void* easy_handle) {
  CURLM* multi = curl_->multi.get();
  CURL* easy = static_cast<CURL*>(easy_handle);
  if (curl_multi_add_handle(multi, easy) != CURLM_OK) return CURLE_FAILED_INIT;
  CURLcode result = CURLE_FAILED_INIT;
  for (bool done = false; !done;) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) break;
    int queued = 0;
    while (const CURLMsg* m = curl_multi_info_read(multi, &queued)) {
      if (m->msg == CURLMSG_DONE && m->easy_handle == easy) {
        result = m->data.result;
        done = true;
      }
    }
    if (done || running == 0) break;
    if (interrupted_.load()) {
      result = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    // libcurl's own timeouts (CURLOPT_TIMEOUT_MS, connect) fire inside curl_multi_perform;
    // the 1 s poll cap only bounds how long between checks if libcurl asks for none.
    if (curl_multi_poll(multi, nullptr, 0, 1000, nullptr) != CURLM_OK) break;
  }
  (void)curl_multi_remove_handle(multi, easy);
  return result;
}

Response Client::post(std::string_view body) {
  response_ = Response{};
  response_.body.reserve(256);
  curl_->errbuf[0] = '\0';
  CURL* easy = curl_->easy.get();
  auto fail = [&](std::string error) {
    scrub(error);
    response_.transport_ok = false;
    response_.error = std::move(error);
    return std::move(response_);
  };
  if (interrupted_.load()) return fail(fmt::format("{}: interrupted (shutting down)", safe_url_));
  if (const CURLcode rc =
          curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      rc != CURLE_OK)
    return fail(fmt::format("curl setopt: {}", curl_easy_strerror(rc)));
  if (const CURLcode rc = curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data()); rc != CURLE_OK)
    return fail(fmt::format("curl setopt: {}", curl_easy_strerror(rc)));
  if (const auto rc = static_cast<CURLcode>(perform(easy)); rc != CURLE_OK) {
    if (rc == CURLE_ABORTED_BY_CALLBACK)
      return fail(fmt::format("{}: interrupted (shutting down)", safe_url_));
    return fail(transportError(easy, rc));
  }
  long status = 0;
  if (const CURLcode rc = curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status); rc != CURLE_OK)
    return fail(fmt::format("curl getinfo: {}", curl_easy_strerror(rc)));
  response_.transport_ok = true;
  response_.status = status;
  if (retry_after_header_) response_.retry_after = parseRetryAfter(*retry_after_header_, now());
  return std::move(response_);
}

std::string Client::transportError(void* easy, int code) const {
  std::string error = fmt::format(
      "{}: {}", safe_url_,
      curl_->errbuf[0] != '\0' ? curl_->errbuf : curl_easy_strerror(static_cast<CURLcode>(code)));
  // curl 7.88 says "Couldn't connect to server"; the operator needs "Connection refused".
  long os_errno = 0;
  if (curl_easy_getinfo(static_cast<CURL*>(easy), CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK &&
      os_errno != 0) {
    const std::string os = std::strerror(static_cast<int>(os_errno));
    if (error.find(os) == std::string::npos) error += " (" + os + ")";
  }
  scrub(error);
  return error;
}

Response Client::probe(Nanos timeout) {
  Response r;
  curl_->errbuf[0] = '\0';
  CURL* easy = curl_->probe.get();
  if (interrupted_.load()) {
    r.error = fmt::format("{}: interrupted (shutting down)", safe_url_);
    return r;
  }
  const long ms = static_cast<long>(
      std::max<Nanos>(1, std::min(timeout, curl_->connect_timeout) / kNanosPerMilli));
  if (curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, ms) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, ms) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_->errbuf) != CURLE_OK) {
    r.error = "curl setopt failed";
    return r;
  }
  if (const auto rc = static_cast<CURLcode>(perform(easy)); rc != CURLE_OK) {
    r.error = rc == CURLE_ABORTED_BY_CALLBACK
                  ? fmt::format("{}: interrupted (shutting down)", safe_url_)
                  : transportError(easy, rc);
    return r;
  }
  r.transport_ok = true;
  return r;
}

std::string trimMessage(std::string_view s) {
  constexpr std::size_t kMaxErrorChars = 300;
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  s = s.substr(first, s.find_last_not_of(kSpace) - first + 1);
  if (s.size() <= kMaxErrorChars) return std::string(s);
  std::size_t n = kMaxErrorChars;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  std::string r(s.substr(0, n));
  r += "…";
  return r;
}

StatusClass classifyStatus(long s) {
  if (s >= 200 && s < 300) return StatusClass::kSuccess;
  if (s == 429 || s >= 500 || s < 200 || (s >= 300 && s < 400) || s == 408 || s == 401 ||
      s == 403 || s == 404)
    return StatusClass::kRetry;
  return StatusClass::kPermanent;
}

}  // namespace gw::http
