// The control socket: request/response over a real Unix socket on a real io_context, with
// gatewayctl's client; stale and live socket files; limits.
#include "gateway/control/control_server.h"

// clang-format off
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it
// clang-format on

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "gateway/ctl/client.h"

namespace fs = std::filesystem;
using gw::control::ControlError;
using gw::control::ControlOptions;
using gw::control::ControlServer;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/gw-control-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

/// Runs the io_context on a thread while a test talks to the server as gatewayctl would.
struct Loop {
  boost::asio::io_context io{1};
  std::unique_ptr<ControlServer> server;
  std::thread thread;
  Loop(const fs::path& path, gw::control::Handler handler, ControlOptions o = {}) {
    o.path = path;
    server = std::make_unique<ControlServer>(io, o, std::move(handler));
  }
  Loop(const fs::path& path, gw::control::AsyncHandler handler, ControlOptions o = {}) {
    o.path = path;
    server = std::make_unique<ControlServer>(io, o, std::move(handler));
  }
  void run() {
    thread = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io);
      io.run();
    });
  }
  ~Loop() {
    io.stop();
    if (thread.joinable()) thread.join();
    server.reset();
  }
};

gw::control::Handler echo() {
  return [](std::string_view req) { return "{\"got\":\"" + std::string(req) + "\"}"; };
}

/// A raw client: connects, sends `data`, reads until EOF.
std::string raw(const fs::path& path, const std::string& data) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  // A busy server answers and closes before reading: the send may then fail (EPIPE), and what
  // the server said is still there to read.
  if (!data.empty()) static_cast<void>(::send(fd, data.data(), data.size(), MSG_NOSIGNAL));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, n);
  ::close(fd);
  return out;
}

}  // namespace

TEST_CASE("one request line, one JSON answer, then the server closes") {
  TempDir dir;
  Loop loop(dir.path / "ctl.sock", echo());
  loop.run();
  const auto r = gw::ctl::request((dir.path / "ctl.sock").string(), "status");
  CHECK(r.exit == gw::ctl::kOk);
  CHECK(r.body == R"({"got":"status"})");
  CHECK(raw(dir.path / "ctl.sock", "sensors\r\n") == "{\"got\":\"sensors\"}\n");
}

TEST_CASE("a request answered later: other requests are served while it waits") {
  TempDir dir;
  const fs::path p = dir.path / "ctl.sock";
  std::vector<gw::control::Reply> waiting;  // the loop's thread only
  Loop loop(p, gw::control::AsyncHandler([&](std::string_view req, gw::control::Reply reply) {
              if (req == "slow") return waiting.push_back(std::move(reply));
              reply(R"({"got":")" + std::string(req) + "\"}");
              if (req == "release") {
                for (auto& r : waiting) r(R"({"slow":"done"})");
                for (auto& r : waiting) r(R"({"slow":"twice"})");  // ignored: answered once
              }
            }));
  loop.run();
  std::string slow;
  std::thread client([&] { slow = raw(p, "slow\n"); });
  // The slow request is held; status is still answered meanwhile.
  CHECK(raw(p, "status\n") == "{\"got\":\"status\"}\n");
  // Release only once the slow one has arrived (its reply is queued on the loop's thread).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    std::promise<std::size_t> n;
    boost::asio::post(loop.io, [&] { n.set_value(waiting.size()); });
    if (n.get_future().get() == 1) break;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::yield();
  }
  CHECK(raw(p, "release\n") == "{\"got\":\"release\"}\n");
  client.join();
  CHECK(slow == "{\"slow\":\"done\"}\n");
}

TEST_CASE("an answer larger than the socket's buffer arrives whole; a request in pieces too") {
  TempDir dir;
  const fs::path p = dir.path / "ctl.sock";
  const std::string big = "{\"x\":\"" + std::string(8 << 20, 'y') + "\"}";
  Loop loop(p, [&](std::string_view req) { return req == "big" ? big : std::string("{}"); });
  loop.run();
  CHECK(raw(p, "big\n") == big + "\n");
  // A request line sent in two writes: read until its newline.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, p.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::send(fd, "bi", 2, MSG_NOSIGNAL) == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // two reads, not one
  REQUIRE(::send(fd, "g\n", 2, MSG_NOSIGNAL) == 2);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, n);
  ::close(fd);
  CHECK(out == big + "\n");
}

TEST_CASE("an answer that comes after the client timed out is dropped") {
  TempDir dir;
  const fs::path p = dir.path / "ctl.sock";
  gw::control::Reply late;
  ControlOptions o;
  o.timeout = gw::kNanosPerSecond / 10;
  Loop loop(p, gw::control::AsyncHandler([&](std::string_view, gw::control::Reply reply) {
              late = std::move(reply);
            }),
            o);
  loop.run();
  CHECK(raw(p, "sensors\n").empty());  // closed at the timeout, nothing said
  std::promise<void> done;
  boost::asio::post(loop.io, [&] {
    late(R"({"too":"late"})");  // no session any more: nothing happens
    done.set_value();
  });
  done.get_future().get();
  CHECK(raw(p, "x\n").empty());  // still serving (and still holding requests)
}

TEST_CASE("the socket is mode 0660 and removed when the server goes") {
  TempDir dir;
  const fs::path p = dir.path / "ctl.sock";
  {
    Loop loop(p, echo());
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0660);
  }
  CHECK_FALSE(fs::exists(p));
}

TEST_CASE("a stale socket file is replaced; a live one is refused") {
  TempDir dir;
  const fs::path p = dir.path / "ctl.sock";
  {  // a socket file nobody listens on, as a crashed gatewayd leaves it
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, p.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    ::close(fd);
    REQUIRE(fs::exists(p));
  }
  Loop first(p, echo());
  first.run();
  CHECK(gw::ctl::request(p.string(), "x").exit == gw::ctl::kOk);

  boost::asio::io_context io2;
  ControlOptions o;
  o.path = p;
  CHECK_THROWS_WITH_AS(ControlServer(io2, o, echo()),
                       doctest::Contains("another gatewayd is running"), ControlError);
  // The refusal left the live socket alone.
  CHECK(gw::ctl::request(p.string(), "still").body == R"({"got":"still"})");
}

TEST_CASE("a path that is not a socket is not deleted") {
  TempDir dir;
  const fs::path p = dir.path / "ctl.sock";
  std::ofstream(p) << "precious";
  boost::asio::io_context io;
  ControlOptions o;
  o.path = p;
  CHECK_THROWS_WITH_AS(ControlServer(io, o, echo()), doctest::Contains("not a socket"),
                       ControlError);
  CHECK(fs::file_size(p) == 8);
}

TEST_CASE("an over-long request gets an error, not a crash") {
  TempDir dir;
  Loop loop(dir.path / "ctl.sock", echo());
  loop.run();
  const std::string answer = raw(dir.path / "ctl.sock", std::string(10000, 'a'));
  CHECK(answer.find("\"error\":\"request longer than 256 bytes\"") != std::string::npos);
}

TEST_CASE("a client that sends nothing is dropped after the timeout") {
  TempDir dir;
  ControlOptions o;
  o.timeout = 200 * gw::kNanosPerMilli;
  Loop loop(dir.path / "ctl.sock", echo(), o);
  loop.run();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(raw(dir.path / "ctl.sock", "") == "");  // EOF from the server
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}

TEST_CASE("beyond max_clients, a client is told the server is busy") {
  TempDir dir;
  ControlOptions o;
  o.max_clients = 1;
  o.timeout = 3 * gw::kNanosPerSecond;
  const fs::path p = dir.path / "ctl.sock";
  Loop loop(p, echo(), o);
  loop.run();
  // The first client holds its slot by not sending a line.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, p.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  // Poll until the server has accepted the first one (the answer turns to "busy").
  std::string answer;
  for (int i = 0; i < 200 && answer.find("busy") == std::string::npos; ++i) {
    answer = raw(p, "status\n");
    if (answer.find("busy") == std::string::npos)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(answer.find("\"error\":\"busy") != std::string::npos);
  ::close(fd);
}

TEST_CASE("gatewayctl's client: missing socket and refused connection mean not running") {
  TempDir dir;
  auto r = gw::ctl::request((dir.path / "none.sock").string(), "status");
  CHECK(r.exit == gw::ctl::kNotRunning);
  CHECK(r.message.find("gatewayd is not running") != std::string::npos);

  const fs::path p = dir.path / "dead.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, p.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  ::close(fd);
  r = gw::ctl::request(p.string(), "status");
  CHECK(r.exit == gw::ctl::kNotRunning);
  CHECK(r.message.find("nobody accepts") != std::string::npos);
}
