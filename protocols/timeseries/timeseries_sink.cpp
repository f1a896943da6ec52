#include "protocols/timeseries/timeseries_sink.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include "core/log.h"
#include "protocols/http/curl_util.h"

namespace gw::timeseries {
namespace {

constexpr std::string_view kFieldKey = "value";

// Escapes one name or tag value. `escape_equals` is false only for the measurement.
void appendEscaped(std::string& out, std::string_view s, bool escape_equals) {
  for (const char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case ',':
      case ' ':
        out += '\\';
        out += c;
        break;
      case '=':
        if (escape_equals) out += '\\';
        out += '=';
        break;
      case '\n':
      case '\r':
        out += "\\ ";  // a newline would end the line; it has no escape
        break;
      default:
        out += c;
    }
  }
}

void appendTag(std::string& out, std::string_view key, std::string_view value) {
  if (key.empty() || value.empty()) return;
  out += ',';
  appendEscaped(out, key, true);
  out += '=';
  appendEscaped(out, value, true);
}

using http::CurlEasy;
using http::CurlSlist;
using http::CurlString;
using http::CurlUrl;
using http::kMaxResponseBytes;
using http::trimMessage;

// A reusable gzip compressor (deflate with a gzip wrapper).
class Gzip {
 public:
  Gzip() {
    if (deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
      throw std::runtime_error("timeseries: zlib deflateInit2 failed");
  }
  ~Gzip() { deflateEnd(&z_); }
  Gzip(const Gzip&) = delete;
  Gzip& operator=(const Gzip&) = delete;

  /// Compresses `in` into `out` (replacing its content). False with `error` set on failure.
  bool compress(std::string_view in, std::string& out, std::string& error) {
    assert(in.size() <= UINT32_MAX);
    if (const int rc = deflateReset(&z_); rc != Z_OK) {
      error = fmt::format("zlib deflateReset: {}", rc);
      return false;
    }
    out.resize(deflateBound(&z_, static_cast<uLong>(in.size())));
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    z_.next_out = reinterpret_cast<Bytef*>(out.data());
    z_.avail_out = static_cast<uInt>(out.size());
    if (const int rc = deflate(&z_, Z_FINISH); rc != Z_STREAM_END) {
      error = fmt::format("zlib deflate: {}", rc);
      return false;
    }
    out.resize(out.size() - z_.avail_out);
    return true;
  }

 private:
  z_stream z_{};
};

// The URL without user info and query (InfluxDB 1.x takes `?u=&p=`), for log lines.
std::string validateUrl(const std::string& url) {
  CurlUrl u(curl_url());
  if (!u) throw std::runtime_error("timeseries: out of memory");
  if (const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0); rc != CURLUE_OK)
    throw std::runtime_error(fmt::format("timeseries: invalid url: {}", curl_url_strerror(rc)));
  auto part = [&](CURLUPart p) {
    char* s = nullptr;
    if (curl_url_get(u.get(), p, &s, 0) != CURLUE_OK) return std::string();
    CurlString owned(s);
    return std::string(s);
  };
  const std::string scheme = part(CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https")
    throw std::runtime_error("timeseries: url must be http:// or https://");
  std::string safe = scheme + "://" + part(CURLUPART_HOST);
  if (const std::string port = part(CURLUPART_PORT); !port.empty()) safe += ":" + port;
  safe += part(CURLUPART_PATH);
  return safe;
}

enum class HttpClass { kDelivered, kTooLarge, kRetry, kRejected };

HttpClass classify(long status) {
  if (status >= 200 && status < 300) return HttpClass::kDelivered;
  if (status == 413) return HttpClass::kTooLarge;
  // 4xx that say nothing about the batch itself: throttling, a wrong token or URL, a missing
  // bucket. Rejecting would skip the whole backlog until someone fixes the config; retrying
  // lets the cursor lag while the journal keeps the data.
  if (status == 401 || status == 403 || status == 404 || status == 408 || status == 429)
    return HttpClass::kRetry;
  if (status >= 400 && status < 500) return HttpClass::kRejected;
  return HttpClass::kRetry;  // 5xx, and 1xx/3xx that we do not follow
}

class TimeseriesSink final : public Sink {
 public:
  explicit TimeseriesSink(const TimeseriesOptions& options)
      : gzip_enabled_(options.gzip),
        send_readings_(options.send_readings),
        send_aggregates_(options.send_aggregates) {
    http::globalInit("timeseries");
    safe_url_ = validateUrl(options.url);
    curl_.reset(curl_easy_init());
    if (!curl_) throw std::runtime_error("timeseries: curl_easy_init failed");

    addHeader("Content-Type: text/plain; charset=utf-8");
    addHeader("Expect:");  // no 100-continue round trip for large bodies
    if (gzip_enabled_) addHeader("Content-Encoding: gzip");
    if (!options.token.empty()) addHeader("Authorization: Token " + options.token);

    const long timeout_ms = static_cast<long>(std::max<Nanos>(1, options.timeout / kNanosPerMilli));
    errbuf_[0] = '\0';
    setopt(CURLOPT_URL, options.url.c_str());
    setopt(CURLOPT_POST, 1L);
    setopt(CURLOPT_HTTPHEADER, headers_.get());
    setopt(CURLOPT_WRITEFUNCTION, &TimeseriesSink::onBody);
    setopt(CURLOPT_WRITEDATA, this);
    setopt(CURLOPT_ERRORBUFFER, errbuf_);
    setopt(CURLOPT_TIMEOUT_MS, timeout_ms);
    setopt(CURLOPT_NOSIGNAL, 1L);  // other threads; no SIGALRM for DNS timeouts
    setopt(CURLOPT_TCP_KEEPALIVE, 1L);
    setopt(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    setopt(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    setopt(CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    log::info("timeseries: sending to {} (gzip {}, token {})", safe_url_,
              gzip_enabled_ ? "on" : "off", options.token.empty() ? "unset" : "set");
  }

  const std::string& name() const override { return name_; }

  SendResult send(std::span<const ReadingRecord> batch) override {
    if (batch.empty()) return {SendStatus::kDelivered, {}};
    const auto [written, skipped] = format(batch);
    if (skipped > 0) noteSkipped(skipped);
    if (written == 0 && skipped == 0) return {SendStatus::kDelivered, {}};  // none for us
    if (written == 0) {
      return {SendStatus::kRejected,
              fmt::format("none of {} records can be written as line protocol (non-finite value "
                          "or invalid metric name)",
                          batch.size())};
    }
    return post(batch);
  }

 private:
  template <typename T>
  void setopt(CURLoption option, T value) {
    if (const CURLcode rc = curl_easy_setopt(curl_.get(), option, value); rc != CURLE_OK)
      throw std::runtime_error(fmt::format("timeseries: curl_easy_setopt({}): {}",
                                           static_cast<int>(option), curl_easy_strerror(rc)));
  }

  void addHeader(const std::string& header) {
    curl_slist* l = curl_slist_append(headers_.get(), header.c_str());
    if (!l) throw std::runtime_error("timeseries: curl_slist_append failed");
    headers_.release();
    headers_.reset(l);
  }

  static size_t onBody(char* data, size_t size, size_t nmemb, void* self_ptr) {
    auto* self = static_cast<TimeseriesSink*>(self_ptr);
    const size_t n = size * nmemb;
    const size_t room = kMaxResponseBytes - std::min(kMaxResponseBytes, self->response_.size());
    self->response_.append(data, std::min(n, room));
    return n;  // read and drop the rest so the connection stays reusable
  }

  bool wanted(const ReadingRecord& r) const {
    switch (r.kind) {
      case RecordKind::kReading:
        return send_readings_;
      case RecordKind::kAggregate:
        return send_aggregates_;
      case RecordKind::kAlert:
        return false;  // alerts go to Kafka and the notifiers
    }
    return false;
  }

  struct Formatted {
    std::size_t written = 0;  ///< lines in body_
    std::size_t skipped = 0;  ///< wanted records line protocol cannot carry
  };
  /// Formats the records this sink sends (timeseries.send) into body_.
  Formatted format(std::span<const ReadingRecord> records) {
    body_.clear();
    Formatted f;
    for (const ReadingRecord& r : records) {
      if (!wanted(r)) continue;
      const std::size_t before = body_.size();
      appendLineProtocol(body_, r);
      ++(body_.size() == before ? f.skipped : f.written);
    }
    return f;
  }

  void noteSkipped(std::size_t n) {
    skipped_total_ += n;
    std::uint64_t suppressed = 0;
    if (skip_log_.allow(monoNow(), suppressed))
      log::warn("timeseries: skipped {} records that line protocol cannot carry ({} in total)", n,
                skipped_total_);
  }

  /// POSTs body_ (already formatted from `records`); splits on 413.
  SendResult post(std::span<const ReadingRecord> records) {
    std::string_view payload = body_;
    if (gzip_enabled_) {
      std::string error;
      if (!gzip_.compress(body_, gzipped_, error)) return {SendStatus::kRetry, std::move(error)};
      payload = gzipped_;
    }
    response_.clear();
    errbuf_[0] = '\0';
    if (const CURLcode rc = curl_easy_setopt(curl_.get(), CURLOPT_POSTFIELDSIZE_LARGE,
                                             static_cast<curl_off_t>(payload.size()));
        rc != CURLE_OK)
      return {SendStatus::kRetry, fmt::format("curl setopt: {}", curl_easy_strerror(rc))};
    if (const CURLcode rc = curl_easy_setopt(curl_.get(), CURLOPT_POSTFIELDS, payload.data());
        rc != CURLE_OK)
      return {SendStatus::kRetry, fmt::format("curl setopt: {}", curl_easy_strerror(rc))};

    if (const CURLcode rc = curl_easy_perform(curl_.get()); rc != CURLE_OK) {
      std::string error =
          fmt::format("{}: {}", safe_url_, errbuf_[0] != '\0' ? errbuf_ : curl_easy_strerror(rc));
      log::debug("timeseries: {} records: {}", records.size(), error);
      return {SendStatus::kRetry, std::move(error)};
    }
    long status = 0;
    if (const CURLcode rc = curl_easy_getinfo(curl_.get(), CURLINFO_RESPONSE_CODE, &status);
        rc != CURLE_OK)
      return {SendStatus::kRetry, fmt::format("curl getinfo: {}", curl_easy_strerror(rc))};

    const HttpClass cls = classify(status);
    if (cls == HttpClass::kDelivered) {
      log::debug("timeseries: {} records, {} bytes -> HTTP {}", records.size(), payload.size(),
                 status);
      return {SendStatus::kDelivered, {}};
    }
    std::string error = fmt::format("HTTP {}", status);
    if (std::string msg = trimMessage(response_); !msg.empty()) {
      error += ": ";
      error += msg;
    }
    log::debug("timeseries: {} records, {} bytes -> {}", records.size(), payload.size(), error);
    switch (cls) {
      case HttpClass::kTooLarge:
        if (records.size() > 1) return split(records);
        return {SendStatus::kRejected, "a single record is too large for the server: " + error};
      case HttpClass::kRejected:
        return {SendStatus::kRejected, std::move(error)};
      default:
        return {SendStatus::kRetry, std::move(error)};
    }
  }

  // Sends both halves in turn. Any retry makes the whole batch a retry (re-sending the part
  // that got through overwrites identical points); otherwise the first rejection wins.
  SendResult split(std::span<const ReadingRecord> records) {
    const std::size_t half = records.size() / 2;
    SendResult rejected{SendStatus::kDelivered, {}};
    for (const auto part : {records.first(half), records.subspan(half)}) {
      if (format(part).written == 0) continue;  // nothing writable here (counted already)
      SendResult r = post(part);
      if (r.status == SendStatus::kRetry) return r;
      if (r.status == SendStatus::kRejected && rejected.status == SendStatus::kDelivered)
        rejected = std::move(r);
    }
    return rejected;
  }

  const std::string name_ = "timeseries";
  const bool gzip_enabled_;
  const bool send_readings_, send_aggregates_;
  std::string safe_url_;
  CurlEasy curl_;
  CurlSlist headers_;
  char errbuf_[CURL_ERROR_SIZE];
  Gzip gzip_;
  std::string body_;
  std::string gzipped_;
  std::string response_;
  std::uint64_t skipped_total_ = 0;
  log::RateLimiter skip_log_;
};

}  // namespace

void appendLineProtocol(std::string& out, const ReadingRecord& r) {
  assert(r.series != nullptr);
  const Series& s = *r.series;
  if (r.kind == RecordKind::kAlert || s.metric.empty() || s.metric.front() == '#') return;
  if (r.kind == RecordKind::kReading && !std::isfinite(r.value)) return;
  appendEscaped(out, s.metric, false);
  if (r.kind == RecordKind::kAggregate) {
    out += '_';
    appendEscaped(out, formatDuration(r.window.size), false);
  }
  appendTag(out, "device", s.device);
  for (const auto& [key, value] : s.tags) {
    if (key != "device") appendTag(out, key, value);
  }
  out += ' ';
  if (r.kind == RecordKind::kReading) {
    appendEscaped(out, kFieldKey, true);
    // Shortest round-trip form. Without an `i` suffix every number is a float, so 21.0 -> "21".
    fmt::format_to(std::back_inserter(out), "={} {}\n", r.value, r.event_time);
    return;
  }
  const WindowStats& w = r.window;
  fmt::format_to(std::back_inserter(out), "count={}i", w.count);
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    const double v = w.get(st);
    if (std::isfinite(v)) fmt::format_to(std::back_inserter(out), ",{}={}", toString(st), v);
  }
  fmt::format_to(std::back_inserter(out), ",late={}i {}\n", w.late, w.start);
}

std::unique_ptr<Sink> makeTimeseriesSink(const TimeseriesOptions& options) {
  return std::make_unique<TimeseriesSink>(options);
}

}  // namespace gw::timeseries
