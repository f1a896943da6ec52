// Counts the system calls one thread makes (the kernel's raw_syscalls:sys_enter tracepoint
// through perf_event_open: a counter, no stop per call). Tests that check how many calls a
// mechanism costs (issue 16) use it; it needs tracefs and the right to trace (root, or
// kernel.perf_event_paranoid <= -1): available() says whether it counts.
#pragma once

#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>

namespace gw::test {

class SyscallCounter {
 public:
  /// Counts the calls of thread `tid` (gettid()) from construction, or from start().
  explicit SyscallCounter(pid_t tid) {
    std::uint64_t id = 0;
    for (const char* path : {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                             "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"}) {
      std::ifstream in(path);
      if (in >> id) break;
    }
    if (id == 0) return;
    perf_event_attr attr{};
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.size = sizeof attr;
    attr.config = id;
    attr.exclude_hv = 1;
    fd_ = static_cast<int>(syscall(SYS_perf_event_open, &attr, tid, -1, -1, 0));
  }
  ~SyscallCounter() {
    if (fd_ >= 0) close(fd_);
  }
  SyscallCounter(const SyscallCounter&) = delete;
  SyscallCounter& operator=(const SyscallCounter&) = delete;

  bool available() const { return fd_ >= 0; }
  void start() {
    if (fd_ >= 0) ioctl(fd_, PERF_EVENT_IOC_RESET, 0);
  }
  /// Calls since start() (0 when not available).
  std::uint64_t count() const {
    std::uint64_t n = 0;
    if (fd_ < 0 || read(fd_, &n, sizeof n) != sizeof n) return 0;
    return n;
  }

 private:
  int fd_ = -1;
};

}  // namespace gw::test
