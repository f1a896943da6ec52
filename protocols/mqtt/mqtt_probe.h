// `gatewayctl check` for the MQTT broker: a connection of its own (client id "<id>-check",
// clean start, no session kept, no subscription, no Will) through TCP, TLS and CONNECT, so the
// broker checks the credentials; then DISCONNECT.
#pragma once

#include "core/component.h"
#include "protocols/mqtt/mqtt_client.h"

namespace gw::mqtt {

/// Blocks for about `timeout` at most, on an io_context of its own.
ProbeResult probeBroker(ClientOptions options, Nanos timeout);

}  // namespace gw::mqtt
