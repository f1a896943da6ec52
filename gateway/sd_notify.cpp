#include "gateway/sd_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>

#include "core/log.h"

namespace gw::sd {

void notify(std::string_view state) {
  if (std::getenv("NOTIFY_SOCKET") == nullptr) return;
  const std::string s(state);
  const int r = sd_notify(0, s.c_str());
  if (r < 0) log::debug("sd_notify failed: errno {}", -r);
}

void ready(std::string_view line) { notify("READY=1\nSTATUS=" + std::string(line)); }

void reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                    static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void stopping() { notify("STOPPING=1"); }

void status(std::string_view line) { notify("STATUS=" + std::string(line)); }

void watchdog() { notify("WATCHDOG=1"); }

std::chrono::microseconds watchdogInterval() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return std::chrono::microseconds{0};
  return std::chrono::microseconds{usec};
}

}  // namespace gw::sd
