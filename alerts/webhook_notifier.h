// Generic webhook notifier (config: `[notify.webhook.<name>]`): POSTs the alert record JSON
// (appendAlertJson, the same object as on the Kafka alerts topic) with the configured headers.
// Status rules are PagerDuty's (see pagerduty_notifier.h): 2xx delivered; 429/5xx/408/401/
// 403/404 and transport errors retried, honouring Retry-After; other 4xx permanent.
// Header values and the URL's path and query (Slack-style URLs carry a token there) are
// treated as secrets: never logged, never in an error text.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alerts/notifier.h"
#include "core/time.h"

namespace gw::alerts {

struct WebhookOptions {
  std::string name;  ///< "ops" for [notify.webhook.ops]
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  ///< name, value
  Nanos timeout = 10 * kNanosPerSecond;
  std::string ca_file;                ///< extra CA bundle; certificate verification is always on
  std::function<Nanos()> wall_clock;  ///< for Retry-After HTTP dates; wallNow when empty
};

/// Throws std::runtime_error (start-up/reload only) on a URL that is not http(s), an invalid
/// header name or a header value with a line break, or when libcurl cannot be set up.
std::unique_ptr<Notifier> makeWebhookNotifier(const WebhookOptions& options);

}  // namespace gw::alerts
