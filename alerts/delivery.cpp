#include "alerts/delivery.h"

#include <fmt/format.h>

namespace gw::alerts {

const char* toString(DeliveryStatus s) {
  switch (s) {
    case DeliveryStatus::kDelivered:
      return "delivered";
    case DeliveryStatus::kRetry:
      return "retry";
    case DeliveryStatus::kPermanent:
      return "permanent";
  }
  return "retry";
}

namespace detail {

DeliveryResult toDelivery(const http::Client& client, const http::Response& r,
                          std::string_view server_message) {
  DeliveryResult out;
  if (!r.transport_ok) {
    out.status = DeliveryStatus::kRetry;
    out.error = r.error;
    return out;
  }
  const http::StatusClass cls = http::classifyStatus(r.status);
  if (cls == http::StatusClass::kSuccess) {
    out.status = DeliveryStatus::kDelivered;
    return out;
  }
  out.error = fmt::format("{}: HTTP {}", client.safeUrl(), r.status);
  if (!server_message.empty()) {
    out.error += ": ";
    out.error += server_message;
  }
  if (cls == http::StatusClass::kPermanent) {
    out.status = DeliveryStatus::kPermanent;
  } else {
    out.status = DeliveryStatus::kRetry;
    out.retry_after = r.retry_after;
    if (out.retry_after)
      out.error += fmt::format(" (retry after {}s)", *out.retry_after / kNanosPerSecond);
  }
  client.scrub(out.error);
  return out;
}

}  // namespace detail
}  // namespace gw::alerts
