#include "protocols/timeseries/timeseries_sink.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include "core/log.h"
#include "protocols/http/client.h"

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

class TimeseriesSink final : public Sink {
 public:
  explicit TimeseriesSink(const TimeseriesOptions& options)
      : gzip_enabled_(options.gzip),
        send_readings_(options.send_readings),
        send_aggregates_(options.send_aggregates),
        http_("timeseries", clientOptions(options)) {
    http_.addSecret(options.token);  // besides the header line, should a server echo it alone
    log::info("timeseries: sending to {} (gzip {}, token {})", http_.safeUrl(),
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

  void interrupt() override {
    stopping_.store(true);
    http_.interrupt();
  }

  std::optional<LinkHealth> health() const override { return link_.get(); }

  // While no batch goes out, a connection (TCP + TLS) is opened now and then: a store nobody
  // can reach is DOWN within seconds, not at the next failed batch.
  void idle() override {
    const bool up = link_.get().state == LinkState::kUp;
    if (up && monoNow() - last_confirmed_ < kProbeEvery) return;
    http::Response r = http_.probe(kProbeTimeout);
    noteTransport(r);
  }

 private:
  static http::ClientOptions clientOptions(const TimeseriesOptions& o) {
    http::ClientOptions h;
    h.url = o.url;
    h.content_type = "text/plain; charset=utf-8";
    h.accept.clear();
    if (o.gzip) h.content_encoding = "gzip";
    if (!o.token.empty()) h.headers.push_back("Authorization: Token " + o.token);
    h.timeout = o.timeout;
    h.connect_timeout = o.connect_timeout;
    h.ca_file = o.ca_file;
    h.wall_clock = o.wall_clock;
    return h;
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
    http::Response r = http_.post(payload);
    noteTransport(r);
    if (!r.transport_ok) {
      log::debug("timeseries: {} records: {}", records.size(), r.error);
      return {SendStatus::kRetry, std::move(r.error)};
    }
    if (http::classifyStatus(r.status) == http::StatusClass::kSuccess) {
      log::debug("timeseries: {} records, {} bytes -> HTTP {}", records.size(), payload.size(),
                 r.status);
      return {SendStatus::kDelivered, {}};
    }
    std::string error = fmt::format("HTTP {}", r.status);
    if (std::string msg = http::trimMessage(r.body); !msg.empty()) {
      error += ": ";
      error += msg;
    }
    http_.scrub(error);
    log::debug("timeseries: {} records, {} bytes -> {}", records.size(), payload.size(), error);
    if (r.status == 413) {
      if (records.size() > 1) return split(records);
      return {SendStatus::kRejected, "a single record is too large for the server: " + error};
    }
    // 4xx that say nothing about the batch itself (throttling, a wrong token or URL, a missing
    // bucket) are retried by classifyStatus: rejecting would skip the whole backlog until
    // someone fixes the config, while retrying lets the cursor lag and the journal keep it.
    if (http::classifyStatus(r.status) == http::StatusClass::kPermanent)
      return {SendStatus::kRejected, std::move(error)};
    return {SendStatus::kRetry, std::move(error), r.retry_after};
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

  /// Any answer, even an HTTP error, confirms the connection; a transport error is its cause.
  void noteTransport(const http::Response& r) {
    if (stopping_.load()) return;  // "interrupted" says nothing about the store
    const LinkState before = link_.get().state;
    if (r.transport_ok) {
      last_confirmed_ = monoNow();
      if (before == LinkState::kDown)
        log::notice("timeseries: {} reachable again", http_.safeUrl());
      if (before != LinkState::kUp) link_.set(LinkState::kUp);
      return;
    }
    if (before != LinkState::kDown) log::warn("timeseries: unreachable: {}", r.error);
    link_.set(LinkState::kDown, r.error);
  }

  // Probe every kProbeEvery while up (and every idle tick otherwise), each within
  // kProbeTimeout: with the forwarder's 1 s tick a silent loss shows within 1 + 4 + 4 s.
  static constexpr Nanos kProbeEvery = 4 * kNanosPerSecond;
  static constexpr Nanos kProbeTimeout = 4 * kNanosPerSecond;

  const std::string name_ = "timeseries";
  LinkMonitor link_;
  Nanos last_confirmed_ = 0;  // worker thread only
  std::atomic<bool> stopping_{false};
  const bool gzip_enabled_;
  const bool send_readings_, send_aggregates_;
  http::Client http_;
  Gzip gzip_;
  std::string body_;
  std::string gzipped_;
  std::uint64_t skipped_total_ = 0;
  log::RateLimiter skip_log_;
};

}  // namespace

void appendLineProtocol(std::string& out, const ReadingRecord& r) {
  assert(r.series != nullptr);
  const InternedSeries& s = *r.series;
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
