#include "alerts/pagerduty_notifier.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <stdexcept>

#include "alerts/delivery.h"
#include "core/json.h"
#include "core/log.h"
#include "protocols/http/client.h"

namespace gw::alerts {
namespace {

// Cuts to at most `max` bytes without splitting a UTF-8 sequence (PagerDuty counts
// characters, so bytes ≤ 1024 is always within its limit).
std::string_view cutUtf8(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

class PagerDutyNotifier final : public Notifier {
 public:
  explicit PagerDutyNotifier(const PagerDutyOptions& o)
      : name_(o.name),
        routing_key_(o.routing_key),
        gateway_id_(o.gateway_id),
        http_("pagerduty", httpOptions(o)) {
    if (routing_key_.empty()) throw std::runtime_error("pagerduty: the routing key is empty");
    http_.addSecret(routing_key_);
    log::info("notifier {}: PagerDuty Events API v2 at {} (routing key set)", name_,
              http_.safeUrl());
  }

  const std::string& name() const override { return name_; }

  DeliveryResult deliver(const AlertEvent& event) override {
    body_.clear();
    appendPagerDutyBody(body_, event, routing_key_, gateway_id_);
    const http::Response r = http_.post(body_);
    std::string message;
    if (r.transport_ok && (r.status < 200 || r.status >= 300)) message = pagerDutyError(r.body);
    DeliveryResult out = detail::toDelivery(http_, r, message);
    if (out.status == DeliveryStatus::kPermanent)
      out.error = "PagerDuty refused the event: " + out.error;
    log::debug("notifier {}: {} {} -> {}{}{}", name_, toString(event.state), event.dedup_key,
               toString(out.status), out.error.empty() ? "" : ": ", out.error);
    return out;
  }

  void interrupt() override { http_.interrupt(); }

 private:
  static http::ClientOptions httpOptions(const PagerDutyOptions& o) {
    http::ClientOptions h;
    h.url = o.url;
    h.timeout = o.timeout;
    h.ca_file = o.ca_file;
    h.wall_clock = o.wall_clock;
    return h;
  }

  const std::string name_;
  const std::string routing_key_;
  const std::string gateway_id_;
  http::Client http_;
  std::string body_;
};

}  // namespace

void appendPagerDutyBody(std::string& out, const AlertEvent& e, std::string_view routing_key,
                         std::string_view gateway_id) {
  out += "{\"routing_key\":";
  json::appendString(out, routing_key);
  out += ",\"event_action\":";
  out += e.state == AlertState::kFiring ? "\"trigger\"" : "\"resolve\"";
  out += ",\"dedup_key\":";
  json::appendString(out, e.dedup_key);
  if (e.state == AlertState::kResolved) {
    out += '}';
    return;
  }
  out += ",\"client\":\"iot-gateway\",\"payload\":{\"summary\":";
  json::appendString(out, cutUtf8(summary(e), kMaxSummary));
  out += ",\"source\":";
  json::appendString(out, e.series.device.empty() ? gateway_id : std::string_view(e.series.device));
  out += ",\"severity\":\"";
  out += toString(e.severity);
  out += "\",\"timestamp\":\"";
  appendRfc3339Millis(out, e.time);
  out += "\",\"component\":";
  json::appendString(out, e.series.metric);
  out += ",\"group\":";
  json::appendString(out, gateway_id);
  out += ",\"class\":";
  json::appendString(out, e.rule);
  out += ",\"custom_details\":{\"gateway\":";
  json::appendString(out, gateway_id);
  out += ",\"rule\":";
  json::appendString(out, e.rule);
  out += ",\"device\":";
  json::appendString(out, e.series.device);
  out += ",\"metric\":";
  json::appendString(out, e.series.metric);
  out += ",\"statistic\":";
  json::appendString(out, e.statistic);
  out += ",\"value\":";
  json::appendNumber(out, e.value);
  out += ",\"threshold\":";
  json::appendNumber(out, e.threshold);
  if (e.window > 0) {
    out += ",\"window\":";
    json::appendString(out, formatDuration(e.window));
  }
  out += ",\"tags\":{";
  for (std::size_t i = 0; i < e.series.tags.size(); ++i) {
    if (i > 0) out += ',';
    json::appendString(out, e.series.tags[i].first);
    out += ':';
    json::appendString(out, e.series.tags[i].second);
  }
  out += "}}}}";
}

std::string pagerDutyError(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view message;
  if (parser.parse(body.data(), body.size()).get(doc) || doc["message"].get_string().get(message))
    return http::trimMessage(body);
  std::string out(message);
  simdjson::dom::array errors;
  if (!doc["errors"].get_array().get(errors)) {
    bool first = true;
    for (simdjson::dom::element e : errors) {
      std::string_view text;
      if (e.get_string().get(text)) continue;
      out += first ? ": " : "; ";
      out += text;
      first = false;
    }
  }
  return http::trimMessage(out);
}

std::unique_ptr<Notifier> makePagerDutyNotifier(const PagerDutyOptions& options) {
  return std::make_unique<PagerDutyNotifier>(options);
}

}  // namespace gw::alerts
