// Logging to stderr with journald priority prefixes (<3> error ... <7> debug).
#pragma once

#include <fmt/core.h>

#include <atomic>
#include <cstdint>
#include <string_view>

namespace gw::log {

enum class Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

void setLevel(Level max_level);
bool enabled(Level level);
void write(Level level, std::string_view message);

template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kWarning)) write(Level::kWarning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void notice(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kNotice)) write(Level::kNotice, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kInfo)) write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kDebug)) write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

/// Lets one message through per interval and counts the ones it held back, so bad input
/// from a chatty device cannot flood the log. Single-threaded use (the event loop).
class RateLimiter {
 public:
  explicit RateLimiter(std::int64_t interval_ns = 10'000'000'000) : interval_ns_(interval_ns) {}
  /// True when a message may be logged now; `suppressed` gets how many were held back since.
  bool allow(std::int64_t mono_now_ns, std::uint64_t& suppressed);

 private:
  std::int64_t interval_ns_;
  std::int64_t next_ns_ = 0;
  std::uint64_t held_ = 0;
};

}  // namespace gw::log
