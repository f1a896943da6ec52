#include "gateway/metrics/metrics_server.h"

// clang-format off
#include <utility>  // before Boost: 1.74's asio/awaitable.hpp uses std::exchange without it
// clang-format on

#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <set>

#include "core/log.h"

namespace gw::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<Impl> {
  struct Session {
    explicit Session(tcp::socket s) : stream(std::move(s)), render_timer(stream.get_executor()) {}
    beast::tcp_stream stream;
    asio::steady_timer render_timer;  ///< a scrape whose text never comes (a reload) is closed
    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> parser;
    http::response<http::string_body> response;
  };

  Impl(asio::io_context& io_, MetricsServerOptions options_, AsyncRenderer render_)
      : io(io_), options(std::move(options_)), render(std::move(render_)), acceptor(io_) {}

  asio::io_context& io;
  MetricsServerOptions options;
  AsyncRenderer render;
  tcp::acceptor acceptor;
  std::set<std::shared_ptr<Session>> sessions;
  bool closed = false;

  void bind() {
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(options.host, ec);
    if (ec)
      throw MetricsError(
          fmt::format("metrics.listen: '{}' is not a numeric address", options.host));
    const tcp::endpoint ep(address, options.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(16, ec);
    if (ec)
      throw MetricsError(fmt::format("metrics.listen: cannot listen on {}:{}: {}", options.host,
                                     options.port, ec.message()));
    log::info("metrics: serving http://{}:{}/metrics", options.host,
              acceptor.local_endpoint().port());
  }

  void accept() {
    acceptor.async_accept(
        [self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
          if (self->closed || ec == asio::error::operation_aborted) return;
          if (ec) {
            log::warn("metrics: accept: {}", ec.message());
          } else if (self->sessions.size() >= self->options.max_clients) {
            boost::system::error_code ignored;
            socket.close(ignored);  // a scraper retries at its next interval
          } else {
            self->serve(std::move(socket));
          }
          self->accept();
        });
  }

  void serve(tcp::socket socket) {
    auto session = std::make_shared<Session>(std::move(socket));
    sessions.insert(session);
    session->parser.emplace();
    session->parser->header_limit(8192);
    session->parser->body_limit(8192);
    session->stream.expires_after(std::chrono::nanoseconds(options.timeout));
    http::async_read(session->stream, session->buffer, *session->parser,
                     [self = shared_from_this(), session](const beast::error_code& ec, size_t) {
                       if (self->closed || ec == asio::error::operation_aborted) return;
                       if (ec) return self->finish(session);
                       self->answer(session);
                     });
  }

  void answer(const std::shared_ptr<Session>& session) {
    const auto& req = session->parser->get();
    auto& res = session->response;
    res.version(req.version());
    res.keep_alive(false);
    res.set(http::field::server, "gatewayd");
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.set(http::field::content_type, "text/plain");
      res.body() = "method not allowed\n";
    } else if (path == "/metrics") {
      res.result(http::status::ok);
      res.set(http::field::content_type, kContentType);
      auto done = [weak = std::weak_ptr<Impl>(shared_from_this()),
                   ws = std::weak_ptr<Session>(session),
                   answered = std::make_shared<bool>(false)](std::string text) {
        const auto impl = weak.lock();
        const auto s = ws.lock();
        if (*answered || !impl || !s || impl->closed || !impl->sessions.count(s)) return;
        *answered = true;
        s->response.body() = std::move(text);
        impl->write(s);
      };
      const auto answered = std::make_shared<bool>(false);
      try {
        render([done, answered](std::string text) {
          *answered = true;
          done(std::move(text));
        });
      } catch (const std::exception& e) {
        res.result(http::status::internal_server_error);
        res.set(http::field::content_type, "text/plain");
        done(fmt::format("cannot render metrics: {}\n", e.what()));
        return;
      }
      if (!*answered) {
        session->render_timer.expires_after(std::chrono::nanoseconds(options.timeout));
        session->render_timer.async_wait(
            [weak = std::weak_ptr<Impl>(shared_from_this()),
             ws = std::weak_ptr<Session>(session)](const boost::system::error_code& ec) {
              const auto impl = weak.lock();
              const auto s = ws.lock();
              if (ec || !impl || !s || impl->closed || !impl->sessions.count(s)) return;
              impl->finish(s);
            });
      }
      return;
    } else if (path == "/") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain");
      res.body() = "gatewayd: metrics at /metrics\n";
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain");
      res.body() = "not found: try /metrics\n";
    }
    write(session);
  }

  void write(const std::shared_ptr<Session>& session) {
    session->render_timer.cancel();
    const auto& req = session->parser->get();
    auto& res = session->response;
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();  // Content-Length stays
    http::async_write(session->stream, res,
                      [self = shared_from_this(), session](const beast::error_code&, size_t) {
                        self->finish(session);
                      });
  }

  void finish(const std::shared_ptr<Session>& session) {
    session->render_timer.cancel();
    beast::error_code ignored;
    session->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    session->stream.close();
    sessions.erase(session);
  }

  void close() {
    closed = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    for (const auto& s : sessions) s->stream.close();
    sessions.clear();
  }
};

MetricsServer::MetricsServer(boost::asio::io_context& io, MetricsServerOptions options,
                             Renderer render)
    : MetricsServer(
          io, std::move(options),
          AsyncRenderer([r = std::move(render)](const std::function<void(std::string)>& done) {
            done(r());
          })) {}

MetricsServer::MetricsServer(boost::asio::io_context& io, MetricsServerOptions options,
                             AsyncRenderer render)
    : impl_(std::make_shared<Impl>(io, std::move(options), std::move(render))) {
  impl_->bind();
  impl_->accept();
}

MetricsServer::~MetricsServer() { impl_->close(); }

std::uint16_t MetricsServer::port() const {
  boost::system::error_code ec;
  const auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace gw::metrics
