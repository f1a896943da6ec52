// The /metrics HTTP server with a renderer that answers later (issue 13: the per-device series
// are assembled over several turns of the loop), and a scrape whose text never comes.
#include "gateway/metrics/metrics_server.h"

// clang-format off
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it
// clang-format on

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

using gw::metrics::AsyncRenderer;
using gw::metrics::MetricsServer;
using gw::metrics::MetricsServerOptions;

namespace {

/// GET /metrics over a plain socket; everything the server sends until it closes.
std::string scrape(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, n);
  ::close(fd);
  return out;
}

struct Loop {
  boost::asio::io_context io{1};
  std::unique_ptr<MetricsServer> server;
  std::thread thread;
  Loop(AsyncRenderer render, gw::Nanos timeout) {
    MetricsServerOptions o;
    o.port = 0;
    o.timeout = timeout;
    server = std::make_unique<MetricsServer>(io, o, std::move(render));
    thread = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io);
      io.run();
    });
  }
  ~Loop() {
    io.stop();
    thread.join();
    server.reset();
  }
};

}  // namespace

TEST_CASE("metrics: the text rendered a few loop turns later is the answer") {
  std::function<void(std::string)> pending;
  int turns = 0;
  std::function<void()> later;  // the loop's thread only
  Loop* self = nullptr;
  Loop loop(AsyncRenderer([&](std::function<void(std::string)> done) {
              pending = std::move(done);
              turns = 0;
              later = [&] {
                if (++turns < 5) return boost::asio::post(self->io, later);
                pending("iot_gateway_up 1\n");
              };
              boost::asio::post(self->io, later);
            }),
            10 * gw::kNanosPerSecond);
  self = &loop;
  const std::string r = scrape(loop.server->port());
  CHECK(r.starts_with("HTTP/1.1 200 OK"));
  CHECK(r.find("Content-Length: 17") != std::string::npos);
  CHECK(r.ends_with("\r\n\r\niot_gateway_up 1\n"));
}

TEST_CASE("metrics: a scrape whose text never comes is closed at the timeout, not kept") {
  int asked = 0;
  Loop loop(AsyncRenderer([&](const std::function<void(std::string)>&) { ++asked; }),
            gw::kNanosPerSecond / 10);
  // More scrapes than max_clients (8): each slot is freed at its timeout.
  for (int i = 0; i < 10; ++i) CHECK(scrape(loop.server->port()).empty());
  std::promise<int> n;
  boost::asio::post(loop.io, [&] { n.set_value(asked); });
  CHECK(n.get_future().get() == 10);
}
