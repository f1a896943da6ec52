// gw-coap-load: CoAP PUT load generator on plain UDP sockets (no libcoap, so the generator is
// cheap and the same against any server). Each socket is one "device" with its own source
// port; each keeps up to --window requests in flight and sends the next as soon as one is
// answered (2.04 piggybacked on the ACK, or as a separate response, which it ACKs). CON
// requests not ACKed are retransmitted as RFC 7252 4.8 says (2 s, doubling, 4 times).
//
//   gw-coap-load --port P --count 100000 --sockets 16 --window 8 [--confirmable]
//                [--path "sensors/dev{socket}/temp"]
// Prints one line: sent=… ok=… failed=… elapsed_s=… rate=… p50_ms=… p99_ms=…
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint8_t kCon = 0, kNon = 1, kAck = 2, kRst = 3;
constexpr std::uint8_t kCodePut = 0x03, kCodeChanged = 0x44;  // 2.04

void addOption(std::vector<std::uint8_t>& out, unsigned delta, const std::string& value) {
  auto nibble = [](unsigned v) { return v < 13 ? v : (v < 269 ? 13u : 14u); };
  const unsigned len = static_cast<unsigned>(value.size());
  out.push_back(static_cast<std::uint8_t>(nibble(delta) << 4 | nibble(len)));
  for (unsigned v : {delta, len}) {
    if (v >= 269) {
      out.push_back(static_cast<std::uint8_t>((v - 269) >> 8));
      out.push_back(static_cast<std::uint8_t>((v - 269) & 0xff));
    } else if (v >= 13) {
      out.push_back(static_cast<std::uint8_t>(v - 13));
    }
  }
  out.insert(out.end(), value.begin(), value.end());
}

struct InFlight {
  Clock::time_point first_sent, last_sent;
  std::vector<std::uint8_t> message;  // CON: kept for retransmission until ACKed
  int retransmits = 0;
  bool acked = false;
};

struct Device {
  int fd = -1;
  std::uint16_t mid = 0;
  std::vector<std::string> path;
  std::unordered_map<std::uint64_t, InFlight> in_flight;       // by token
  std::unordered_map<std::uint16_t, std::uint64_t> mid_token;  // CON: message id -> token
};

// RFC 7252 4.8: ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4, doubling (no random factor here).
constexpr auto kAckTimeout = std::chrono::seconds(2);
constexpr int kMaxRetransmit = 4;

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", path = "sensors/dev{socket}/temp";
  int port = 5683, sockets = 16, window = 8;
  std::uint64_t count = 100000;
  bool confirmable = false;
  double timeout_s = 120;
  CLI::App app{"gw-coap-load: CoAP PUT load generator"};
  app.add_option("--host", host, "Server IPv4 address")->capture_default_str();
  app.add_option("--port", port, "Server UDP port")->required();
  app.add_option("--count", count, "Requests to send in all")->capture_default_str();
  app.add_option("--sockets", sockets, "Devices (one UDP socket each)")->capture_default_str();
  app.add_option("--window", window, "Requests in flight per device")->capture_default_str();
  app.add_flag("--confirmable", confirmable, "Send CON requests (default NON)");
  app.add_option("--path", path, "Uri-Path; {socket} is the device number")->capture_default_str();
  app.add_option("--timeout", timeout_s, "Give up after SECONDS")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &dst.sin_addr) != 1) {
    fmt::print(stderr, "bad --host {}\n", host);
    return 2;
  }
  std::vector<Device> devices(static_cast<size_t>(sockets));
  std::vector<pollfd> pfds;
  for (int i = 0; i < sockets; ++i) {
    Device& d = devices[static_cast<size_t>(i)];
    d.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    const int buf = 4 << 20;
    ::setsockopt(d.fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (d.fd < 0 || ::connect(d.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
      fmt::print(stderr, "socket/connect: {}\n", std::strerror(errno));
      return 1;
    }
    d.mid = static_cast<std::uint16_t>(i * 4099);
    std::string p = path;
    if (auto at = p.find("{socket}"); at != std::string::npos) p.replace(at, 8, std::to_string(i));
    size_t start = 0;
    while (start <= p.size()) {
      const size_t end = std::min(p.find('/', start), p.size());
      d.path.push_back(p.substr(start, end - start));
      start = end + 1;
    }
    pfds.push_back(pollfd{d.fd, POLLIN, 0});
  }

  std::uint64_t sent = 0, ok = 0, failed = 0, retransmitted = 0, next_token = 1;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(count);
  std::vector<std::uint8_t> msg;
  auto send = [&](Device& d) {
    const std::uint64_t token = next_token++;
    msg.clear();
    msg.push_back(static_cast<std::uint8_t>(0x40 | (confirmable ? kCon : kNon) << 4 | 8));
    msg.push_back(kCodePut);
    ++d.mid;
    msg.push_back(static_cast<std::uint8_t>(d.mid >> 8));
    msg.push_back(static_cast<std::uint8_t>(d.mid & 0xff));
    for (int b = 0; b < 8; ++b) msg.push_back(static_cast<std::uint8_t>(token >> (8 * b)));
    unsigned last = 0;
    for (const auto& seg : d.path) {
      addOption(msg, 11 - last, seg);  // Uri-Path
      last = 11;
    }
    const std::string value = fmt::format("{:.1f}", static_cast<double>(token % 1000) / 10.0);
    msg.push_back(0xff);
    msg.insert(msg.end(), value.begin(), value.end());
    if (::send(d.fd, msg.data(), msg.size(), 0) < 0) {
      ++failed;
      return;
    }
    InFlight f;
    f.first_sent = f.last_sent = Clock::now();
    if (confirmable) {
      f.message = msg;
      d.mid_token[d.mid] = token;
    }
    d.in_flight.emplace(token, std::move(f));
    ++sent;
  };

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s);
  for (auto& d : devices)
    for (int w = 0; w < window && sent < count; ++w) send(d);
  std::uint8_t buf[2048];
  const auto request_timeout = std::chrono::seconds(confirmable ? 60 : 5);
  auto last_sweep = Clock::now();
  while (ok + failed < count && Clock::now() < deadline) {
    if (::poll(pfds.data(), pfds.size(), 100) < 0) break;
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & POLLIN)) continue;
      Device& d = devices[i];
      while (true) {
        const ssize_t n = ::recv(d.fd, buf, sizeof buf, 0);
        if (n < 4) break;
        const std::uint8_t type = (buf[0] >> 4) & 3, tkl = buf[0] & 0x0f, code = buf[1];
        if (type == kCon) {  // a separate response: ACK it (empty ACK, same message id)
          const std::uint8_t ack[4] = {static_cast<std::uint8_t>(0x40 | kAck << 4), 0, buf[2],
                                       buf[3]};
          ::send(d.fd, ack, sizeof ack, 0);
        }
        if (type == kAck) {  // our CON is acknowledged: stop retransmitting it
          const std::uint16_t mid = static_cast<std::uint16_t>(buf[2] << 8 | buf[3]);
          if (auto m = d.mid_token.find(mid); m != d.mid_token.end()) {
            if (auto f = d.in_flight.find(m->second); f != d.in_flight.end())
              f->second.acked = true;
            d.mid_token.erase(m);
          }
        }
        if (code == 0 || tkl != 8 || n < 12) continue;  // empty ACK (separate response follows)
        std::uint64_t token = 0;
        for (int b = 0; b < 8; ++b) token |= static_cast<std::uint64_t>(buf[4 + b]) << (8 * b);
        auto it = d.in_flight.find(token);
        if (it == d.in_flight.end()) continue;  // a duplicate
        latencies_ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - it->second.first_sent)
                .count());
        d.in_flight.erase(it);
        if (code == kCodeChanged && type != kRst)
          ++ok;
        else
          ++failed;
        if (sent < count) send(d);
      }
    }
    if (Clock::now() - last_sweep > std::chrono::milliseconds(100)) {
      last_sweep = Clock::now();
      for (auto& d : devices) {
        for (auto it = d.in_flight.begin(); it != d.in_flight.end();) {
          InFlight& f = it->second;
          if (confirmable && !f.acked && f.retransmits < kMaxRetransmit &&
              last_sweep - f.last_sent > kAckTimeout * (1 << f.retransmits)) {
            ::send(d.fd, f.message.data(), f.message.size(), 0);  // same message id and token
            f.last_sent = last_sweep;
            ++f.retransmits;
            ++retransmitted;
          }
          if (last_sweep - f.first_sent > request_timeout) {
            it = d.in_flight.erase(it);
            ++failed;
            if (sent < count) send(d);
          } else {
            ++it;
          }
        }
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty()
               ? 0.0
               : latencies_ms[std::min(
                     latencies_ms.size() - 1,
                     static_cast<size_t>(p * static_cast<double>(latencies_ms.size())))];
  };
  fmt::print(
      "sent={} ok={} failed={} retransmitted={} elapsed_s={:.3f} rate={:.0f} p50_ms={:.2f} "
      "p99_ms={:.2f}\n",
      sent, ok, failed, retransmitted, elapsed, static_cast<double>(ok) / elapsed, pct(0.5),
      pct(0.99));
  for (auto& d : devices) ::close(d.fd);
  return ok + failed >= count && failed == 0 ? 0 : 1;
}
