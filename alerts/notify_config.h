// `[notify.pagerduty]` and `[notify.webhook.<name>]`, read in this folder.
#pragma once

#include <string_view>

#include "alerts/pagerduty_notifier.h"
#include "alerts/webhook_notifier.h"
#include "core/component.h"
#include "core/config/section.h"

namespace gw::alerts {

/// Reads `[notify.pagerduty]`, loading the routing key (file or LoadCredential=). Throws
/// config::ConfigError.
PagerDutyOptions parsePagerDuty(config::Section& s, std::string_view gateway_id);
/// Reads `[notify.webhook.<name>]`. Throws config::ConfigError.
WebhookOptions parseWebhook(config::Section& s, std::string_view name);

/// `[notify.pagerduty]` and `[notify.webhook.<name>]` for the registry: each builds the outbox
/// sink ("notify.<name>") that delivers alert events through the notifier.
Component pagerDutyComponent();
Component webhookComponent();

}  // namespace gw::alerts
