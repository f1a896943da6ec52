#include "alerts/webhook_notifier.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "alerts/alert_event.h"
#include "alerts/delivery.h"
#include "core/log.h"
#include "protocols/http/client.h"

namespace gw::alerts {
namespace {

// RFC 9110 token characters.
bool tokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

http::ClientOptions httpOptions(const WebhookOptions& o) {
  http::ClientOptions h;
  h.url = o.url;
  h.timeout = o.timeout;
  h.ca_file = o.ca_file;
  h.wall_clock = o.wall_clock;
  h.url_path_is_secret = true;
  for (const auto& [name, value] : o.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), tokenChar))
      throw std::runtime_error(fmt::format("webhook {}: invalid header name \"{}\"", o.name, name));
    if (value.find_first_of("\r\n") != std::string::npos)
      throw std::runtime_error(
          fmt::format("webhook {}: header {} contains a line break", o.name, name));
    h.headers.push_back(name + ": " + value);
  }
  return h;
}

class WebhookNotifier final : public Notifier {
 public:
  explicit WebhookNotifier(const WebhookOptions& o)
      : name_(o.name), http_("webhook " + o.name, httpOptions(o)) {
    log::info("notifier {}: webhook to {} ({} extra headers)", name_, http_.safeUrl(),
              o.headers.size());
  }

  const std::string& name() const override { return name_; }

  DeliveryResult deliver(const AlertEvent& event) override {
    body_.clear();
    appendAlertJson(body_, event);
    const http::Response r = http_.post(body_);
    std::string message;
    if (r.transport_ok && (r.status < 200 || r.status >= 300)) message = http::trimMessage(r.body);
    DeliveryResult out = detail::toDelivery(http_, r, message);
    log::debug("notifier {}: {} {} -> {}{}{}", name_, toString(event.state), event.dedup_key,
               toString(out.status), out.error.empty() ? "" : ": ", out.error);
    return out;
  }

  void interrupt() override { http_.interrupt(); }

 private:
  const std::string name_;
  http::Client http_;
  std::string body_;
};

}  // namespace

std::unique_ptr<Notifier> makeWebhookNotifier(const WebhookOptions& options) {
  return std::make_unique<WebhookNotifier>(options);
}

}  // namespace gw::alerts
