// The service manager's notification protocol (sd_notify(3)) for Type=notify units.
#pragma once

#include <chrono>
#include <string_view>

namespace gw::sd {

/// Sends `state` (newline-separated "KEY=value" assignments) to $NOTIFY_SOCKET.
/// A no-op when NOTIFY_SOCKET is unset (not started by systemd); failures are logged at debug
/// level only, since a missed notification must never stop the daemon.
/// Threading: any thread; in gatewayd, the event loop thread.
void notify(std::string_view state);

/// READY=1 with a STATUS= line.
void ready(std::string_view status);
/// RELOADING=1 (with MONOTONIC_USEC=, as systemd 253+ wants for notify-reload).
void reloading();
/// STOPPING=1.
void stopping();
/// STATUS=<line>.
void status(std::string_view line);
/// WATCHDOG=1.
void watchdog();

/// The watchdog interval the service manager asked for (WATCHDOG_USEC, honouring
/// WATCHDOG_PID), or zero when the watchdog is off. Send watchdog() at half of it.
std::chrono::microseconds watchdogInterval();

}  // namespace gw::sd
