#include "gateway/control/control_server.h"

// clang-format off
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it
// clang-format on

#include <fmt/format.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <cstring>
#include <set>

#include "core/json.h"
#include "core/log.h"

namespace gw::control {
namespace {

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;

std::string errorJson(std::string_view message) {
  std::string s = R"({"error":)";
  json::appendString(s, message);
  s += "}\n";
  return s;
}

/// Whether a process accepts connections on the socket file at `path`: true if so, false if
/// the file is stale (ECONNREFUSED: nobody listens). Other errors throw.
bool socketIsLive(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ControlError(fmt::format("socket(): {}", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  if (rc == 0) return true;
  if (err == ECONNREFUSED || err == ENOENT) return false;
  throw ControlError(
      fmt::format("control socket {}: cannot check whether another gatewayd uses it: {}", path,
                  std::strerror(err)));
}

}  // namespace

struct ControlServer::Impl : std::enable_shared_from_this<Impl> {
  struct Session {
    explicit Session(asio::io_context& io) : socket(io), timer(io) {}
    Socket socket;
    asio::steady_timer timer;
    std::string in;
    std::string out;
    size_t written = 0;
  };

  Impl(asio::io_context& io_, ControlOptions options_, AsyncHandler handler_)
      : io(io_), options(std::move(options_)), handler(std::move(handler_)), acceptor(io_) {}

  asio::io_context& io;
  ControlOptions options;
  AsyncHandler handler;
  asio::local::stream_protocol::acceptor acceptor;
  std::set<std::shared_ptr<Session>> sessions;
  bool closed = false;
  dev_t dev = 0;
  ino_t ino = 0;

  void bind() {
    const std::string path = options.path.string();
    if (path.size() >= sizeof(sockaddr_un{}.sun_path))
      throw ControlError(
          fmt::format("gateway.control_socket: {} is too long for a Unix socket ({} bytes at most)",
                      path, sizeof(sockaddr_un{}.sun_path) - 1));
    std::error_code fec;
    const auto dir = options.path.parent_path();
    if (!dir.empty() && !std::filesystem::exists(dir, fec)) {
      std::filesystem::create_directories(dir, fec);
      if (fec)
        throw ControlError(fmt::format("gateway.control_socket: cannot create {}: {}", dir.string(),
                                       fec.message()));
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        throw ControlError(fmt::format(
            "gateway.control_socket: {} exists and is not a socket; remove it or choose "
            "another path",
            path));
      if (socketIsLive(path))
        throw ControlError(fmt::format(
            "gateway.control_socket: {} is in use: another gatewayd is running with it (stop "
            "it, or give this one its own control_socket and state_dir)",
            path));
      log::notice("control: replacing stale socket {} (left by a previous run)", path);
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        throw ControlError(fmt::format("gateway.control_socket: cannot remove stale {}: {}", path,
                                       std::strerror(errno)));
    }
    boost::system::error_code ec;
    const asio::local::stream_protocol::endpoint ep(path);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(16, ec);
    if (ec)
      throw ControlError(
          fmt::format("gateway.control_socket: cannot listen on {}: {}", path, ec.message()));
    // 0660, group iot-gateway: the service user and the members of the group (gatewayctl
    // as a technician who was added to it); nobody else.
    if (::chmod(path.c_str(), 0660) != 0)
      log::warn("control: chmod 0660 {}: {}", path, std::strerror(errno));
    if (const group* g = ::getgrnam(kGroup)) {
      // Under the packaged unit the socket is born with the group already (Group=) and the
      // sandbox denies chown: only change what needs changing.
      struct stat now {};
      const bool has_group = ::stat(path.c_str(), &now) == 0 && now.st_gid == g->gr_gid;
      if (!has_group && ::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0)
        log::warn("control: cannot give {} to group {}: {}", path, kGroup, std::strerror(errno));
    }
    if (::stat(path.c_str(), &st) == 0) {
      dev = st.st_dev;
      ino = st.st_ino;
    }
    log::info("control: listening on {}", path);
  }

  void accept() {
    acceptor.async_accept(
        [self = shared_from_this()](const boost::system::error_code& ec, Socket socket) {
          if (self->closed || ec == asio::error::operation_aborted) return;
          if (ec) {
            log::warn("control: accept: {}", ec.message());
          } else if (self->sessions.size() >= self->options.max_clients) {
            // Never blocks: a fresh connection's send buffer takes this small answer.
            boost::system::error_code ignored;
            socket.non_blocking(true, ignored);
            const std::string busy = errorJson("busy: too many control clients, try again");
            socket.send(asio::buffer(busy), 0, ignored);
            socket.close(ignored);
          } else {
            self->serve(std::move(socket));
          }
          self->accept();
        });
  }

  void serve(Socket socket) {
    auto session = std::make_shared<Session>(io);
    session->socket = std::move(socket);
    boost::system::error_code ignored;
    session->socket.non_blocking(true, ignored);
    sessions.insert(session);
    session->timer.expires_after(std::chrono::nanoseconds(options.timeout));
    session->timer.async_wait(
        [self = shared_from_this(), session](const boost::system::error_code& ec) {
          if (ec) return;
          self->finish(session);  // too slow: drop it
        });
    read(session);
  }

  // A request is read, answered and written in the turn of the loop its bytes arrive in when
  // it can be (the socket is non-blocking): every asynchronous step would wait behind
  // everything else ready on the loop — during a flood, behind a long queue of ingest work —
  // and `status` took several such waits (issue 13).
  void read(const std::shared_ptr<Session>& session) {
    for (;;) {
      if (closed || !sessions.count(session)) return;
      const size_t have = session->in.size();
      session->in.resize(kMaxRequest + 1);
      boost::system::error_code ec;
      const size_t n = session->socket.read_some(
          asio::buffer(session->in.data() + have, session->in.size() - have), ec);
      session->in.resize(have + (ec ? 0 : n));
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        return whenReady(session, Socket::wait_read, &Impl::read);
      }
      const auto nl = session->in.find('\n');
      if (nl == std::string::npos) {
        if (session->in.size() > kMaxRequest)
          return respond(session,
                         errorJson(fmt::format("request longer than {} bytes", kMaxRequest)));
        if (ec) return finish(session);  // closed before a full line: nothing to say
        continue;
      }
      std::string_view line(session->in.data(), nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      return dispatch(session, line);
    }
  }

  /// Goes on with `step` once the socket can be read or written without blocking.
  void whenReady(const std::shared_ptr<Session>& session, Socket::wait_type what,
                 void (Impl::*step)(const std::shared_ptr<Session>&)) {
    session->socket.async_wait(
        what, [self = shared_from_this(), session, step](const boost::system::error_code& ec) {
          if (self->closed || ec == asio::error::operation_aborted) return;
          if (ec) return self->finish(session);
          ((*self).*step)(session);
        });
  }

  void dispatch(const std::shared_ptr<Session>& session, std::string_view line) {
    // Once, and only while the session is still ours (not timed out, not closed).
    auto answered = std::make_shared<bool>(false);
    Reply reply = [weak = std::weak_ptr<Impl>(shared_from_this()),
                   ws = std::weak_ptr<Session>(session), answered](std::string answer) {
      const auto impl = weak.lock();
      const auto s = ws.lock();
      if (*answered || !impl || !s || impl->closed || !impl->sessions.count(s)) return;
      *answered = true;
      if (answer.empty() || answer.back() != '\n') answer += '\n';
      impl->respond(s, std::move(answer));
    };
    try {
      handler(line, reply);
    } catch (const std::exception& e) {
      reply(errorJson(fmt::format("internal error: {}", e.what())));
    }
  }

  /// Writes what the socket takes now; the rest (an answer larger than the socket's buffer)
  /// when it can take more. Closes once all is written: the client reads to the end.
  void respond(const std::shared_ptr<Session>& session, std::string answer) {
    session->out = std::move(answer);
    session->written = 0;
    write(session);
  }

  void write(const std::shared_ptr<Session>& session) {
    while (session->written < session->out.size()) {
      boost::system::error_code ec;
      const size_t n =
          session->socket.write_some(asio::buffer(session->out.data() + session->written,
                                                  session->out.size() - session->written),
                                     ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        return whenReady(session, Socket::wait_write, &Impl::write);
      }
      if (ec) break;  // the client went away
      session->written += n;
    }
    finish(session);
  }

  void finish(const std::shared_ptr<Session>& session) {
    boost::system::error_code ignored;
    session->timer.cancel();
    session->socket.shutdown(Socket::shutdown_both, ignored);
    session->socket.close(ignored);
    sessions.erase(session);
  }

  void close() {
    closed = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    for (const auto& s : sessions) {
      s->timer.cancel();
      s->socket.close(ignored);
    }
    sessions.clear();
    // Remove the file only if it is still the one we bound (not a successor's).
    struct stat st {};
    const std::string path = options.path.string();
    if (ino != 0 && ::stat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
      ::unlink(path.c_str());
  }
};

ControlServer::ControlServer(boost::asio::io_context& io, ControlOptions options, Handler handler)
    : ControlServer(
          io, std::move(options),
          AsyncHandler([h = std::move(handler)](std::string_view request, const Reply& reply) {
            reply(h(request));
          })) {}

ControlServer::ControlServer(boost::asio::io_context& io, ControlOptions options,
                             AsyncHandler handler)
    : impl_(std::make_shared<Impl>(io, std::move(options), std::move(handler))) {
  impl_->bind();
  impl_->accept();
}

ControlServer::~ControlServer() { impl_->close(); }

const std::filesystem::path& ControlServer::path() const { return impl_->options.path; }

}  // namespace gw::control
