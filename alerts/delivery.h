// How an HTTP answer becomes a DeliveryResult, the same way for the PagerDuty and webhook
// notifiers (internal to alerts/: only their .cpp files include it).
#pragma once

#include <string_view>

#include "alerts/notifier.h"
#include "protocols/http/client.h"

namespace gw::alerts::detail {

/// http::classifyStatus decides: kSuccess → kDelivered, kRetry → kRetry (with the server's
/// Retry-After), kPermanent → kPermanent; a transport error is a kRetry. `server_message` is
/// what the error text quotes from the response. Secrets are scrubbed from the error.
DeliveryResult toDelivery(const http::Client& client, const http::Response& response,
                          std::string_view server_message);

}  // namespace gw::alerts::detail
