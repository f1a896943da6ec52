#include "core/log.h"

#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <string>

namespace gw::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_mutex;
}  // namespace

void setLevel(Level max_level) { g_level.store(static_cast<int>(max_level)); }

bool enabled(Level level) {
  return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view message) {
  // One write(2) per line so lines from several threads never interleave.
  std::string line;
  line.reserve(message.size() + 5);
  line += '<';
  line += static_cast<char>('0' + static_cast<int>(level));
  line += '>';
  line.append(message);
  line += '\n';
  std::lock_guard lock(g_mutex);
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

bool RateLimiter::allow(std::int64_t mono_now_ns, std::uint64_t& suppressed) {
  if (mono_now_ns < next_ns_) {
    ++held_;
    return false;
  }
  suppressed = held_;
  held_ = 0;
  next_ns_ = mono_now_ns + interval_ns_;
  return true;
}

}  // namespace gw::log
