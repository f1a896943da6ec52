// The steady clock as Nanos, for timers that put their due times on a shared grid (the event
// loop's watch tick, gateway/pipeline_watch.h, and the MQTT client's batch wait): both sides
// must read the same clock that asio's steady_timer waits on.
#pragma once

#include <chrono>

#include "core/time.h"

namespace gw {

/// std::chrono::steady_clock now, in nanoseconds since its epoch.
inline Nanos steadyNow() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The steady_clock time point `t` nanoseconds after its epoch (a steady_timer's expires_at).
inline std::chrono::steady_clock::time_point steadyAt(Nanos t) {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds(t)));
}

}  // namespace gw
