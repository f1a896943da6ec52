// The MQTT source (design: "Data flow"): the MQTT v5 client, the subscriptions' routes
// (filter, topic template, payload decoder), the broker's receive stamp and the QoS 1
// acknowledgement bookkeeping (a PUBACK only once the journal has committed the message).
#pragma once

#include "core/component.h"

namespace gw::mqtt {

/// The `[mqtt]` source for the registry.
Component component();

}  // namespace gw::mqtt
