// Delivers the alert outbox (alert records in the journal) through one notifier: the adapter
// that lets the forwarder's cursor, retry and status logic drive a notifier like any sink.
#pragma once

#include <memory>

#include "alerts/notifier.h"
#include "core/sink.h"

namespace gw::alerts {

/// The sink's name, and so its journal cursor, is "notify.<notifier name>". Feed it alert
/// records only (Journal::readAlerts) and batches of ONE record: send() delivers each record
/// whose stored `notify` list names this notifier (others are done at once) and returns
/// kRetry (with the server's Retry-After) or kRejected (PagerDuty 400) for the first that fails,
/// so a larger batch would deliver its first events twice on a retry. A record that cannot be
/// parsed is rejected (logged by the forwarder with the reason).
std::unique_ptr<Sink> makeOutboxSink(std::unique_ptr<Notifier> notifier);

}  // namespace gw::alerts
