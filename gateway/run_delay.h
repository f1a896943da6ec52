// How long a thread was runnable but not running: waiting in the scheduler's run queue for a
// CPU (issue 13: of the event loop's stalls, what was waiting for a CPU rather than blocked in a
// system call or working). Linux keeps it per thread in /proc/<pid>/task/<tid>/schedstat, the
// second of its three figures (CONFIG_SCHED_INFO: CPU time, run-queue wait, time slices, in
// nanoseconds). Read with one pread on a descriptor kept open; the loop watch reads it only
// while the loop is busy or late (a system call, issue 16).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <string>
#include <string_view>

#include "core/time.h"

namespace gw {

/// The run-queue wait (second field) of a schedstat line; -1 when it is not one.
inline Nanos parseRunDelay(std::string_view line) {
  const auto skip = [&] {
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  };
  long long values[2] = {-1, -1};
  for (auto& v : values) {
    skip();
    const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
    if (ec != std::errc() || v < 0) return -1;
    line.remove_prefix(static_cast<std::size_t>(end - line.data()));
  }
  return static_cast<Nanos>(values[1]);
}

/// The calling thread's run-queue wait so far. The file is opened by the first read(), on the
/// thread whose figure is wanted; one object per thread.
class RunDelayClock {
 public:
  RunDelayClock() = default;
  ~RunDelayClock() {
    if (fd_ >= 0) ::close(fd_);
  }
  RunDelayClock(const RunDelayClock&) = delete;
  RunDelayClock& operator=(const RunDelayClock&) = delete;

  /// Nanoseconds this thread waited for a CPU since it started; -1 when the kernel does not say
  /// (no /proc, no CONFIG_SCHED_INFO): then never tried again.
  Nanos read() {
    if (fd_ == -2) return -1;
    if (fd_ < 0) {
      const std::string path = "/proc/self/task/" + std::to_string(::gettid()) + "/schedstat";
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) {
        fd_ = -2;
        return -1;
      }
    }
    char buf[96];
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    const Nanos v = n > 0 ? parseRunDelay(std::string_view(buf, static_cast<std::size_t>(n))) : -1;
    if (v < 0) {
      ::close(fd_);
      fd_ = -2;
    }
    return v;
  }

 private:
  int fd_ = -1;  // -2: not available
};

}  // namespace gw
