#include "gateway/ctl/client.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace gw::ctl {
namespace {

constexpr size_t kMaxAnswer = 16u << 20;  // a sensors list of many thousand devices fits

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

int remainingMs(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

/// Waits until `fd` is ready for `events` or the deadline; false on timeout.
bool waitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, remainingMs(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

Reply request(const std::string& path, std::string_view command, int timeout_ms) {
  Reply r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    r.exit = kUsage;
    r.message = fmt::format("socket path {} is too long", path);
    return r;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd s{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) {
    r.exit = kBadAnswer;
    r.message = fmt::format("socket(): {}", std::strerror(errno));
    return r;
  }
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
      r.exit = kNotRunning;
      r.message = fmt::format(
          "gatewayd is not running: {} ({}).\n"
          "Start it with `systemctl start iot-gateway` (see `systemctl status iot-gateway` and "
          "`journalctl -u iot-gateway`), or point --socket at its gateway.control_socket.",
          err == ECONNREFUSED ? "nobody accepts connections on " + path
                              : "no control socket at " + path,
          std::strerror(err));
    } else if (err == EACCES || err == EPERM) {
      r.exit = kNoPermission;
      r.message = fmt::format(
          "permission denied on {}.\n"
          "Run gatewayctl as root (sudo gatewayctl …) or join the iot-gateway group "
          "(sudo usermod -aG iot-gateway $USER, then log in again).",
          path);
    } else {
      r.exit = kNotRunning;
      r.message = fmt::format("cannot connect to {}: {}", path, std::strerror(err));
    }
    return r;
  }
  std::string req(command);
  req += '\n';
  size_t off = 0;
  while (off < req.size()) {
    if (!waitFor(s.fd, POLLOUT, deadline)) {
      r.exit = kBadAnswer;
      r.message = fmt::format("gatewayd did not take the request within {} ms", timeout_ms);
      return r;
    }
    const ssize_t n = ::send(s.fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      r.exit = kBadAnswer;
      r.message = fmt::format("sending to {}: {}", path, std::strerror(errno));
      return r;
    }
    off += static_cast<size_t>(n);
  }
  char buf[65536];
  for (;;) {
    if (!waitFor(s.fd, POLLIN, deadline)) {
      r.exit = kBadAnswer;
      r.message = fmt::format("gatewayd did not answer within {} ms", timeout_ms);
      return r;
    }
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      r.exit = kBadAnswer;
      r.message = fmt::format("reading from {}: {}", path, std::strerror(errno));
      return r;
    }
    if (n == 0) break;
    r.body.append(buf, static_cast<size_t>(n));
    if (r.body.size() > kMaxAnswer) {
      r.exit = kBadAnswer;
      r.message = "the answer is too large";
      return r;
    }
  }
  while (!r.body.empty() && (r.body.back() == '\n' || r.body.back() == '\r')) r.body.pop_back();
  if (r.body.empty()) {
    r.exit = kBadAnswer;
    r.message = "gatewayd closed the connection without an answer";
  }
  return r;
}

}  // namespace gw::ctl
