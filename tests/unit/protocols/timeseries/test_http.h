// Test helpers for the time-series sink: a scripted HTTP/1.1 server on 127.0.0.1:0, a libcurl
// GET, gunzip, and a strict line-protocol reader.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace gw::timeseries::test {

struct HttpRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  ///< keys lower-cased
  std::string body;                            ///< as received (possibly gzip)
};

struct HttpResponse {
  int status = 204;
  std::string body;
  bool hang = false;                 ///< never answer (the client must time out)
  std::vector<std::string> headers;  ///< extra "Name: value" lines
};

/// Serves requests on 127.0.0.1:<ephemeral> from its own thread, keep-alive, answering each
/// with `handler`. Records every request and counts accepted connections.
class TestHttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  explicit TestHttpServer(Handler handler);
  ~TestHttpServer();
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/write") const;
  std::vector<HttpRequest> requests() const;
  int connections() const { return connections_.load(); }

 private:
  void run();

  Handler handler_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mutex_;
  std::vector<HttpRequest> requests_;
  std::thread thread_;
};

/// A loopback port with nothing listening on it (bound, then closed).
std::uint16_t closedPort();

struct HttpResult {
  long status = 0;
  std::string body;
};
/// GET with libcurl; status 0 when the request failed.
HttpResult httpGet(const std::string& url, long timeout_ms = 2000);

/// Inflates a gzip stream (gzip wrapper only, not raw zlib); nullopt when it is not gzip.
std::optional<std::string> gunzip(const std::string& in);

/// One parsed line: measurement, tags in order, fields, timestamp (strict: only the escapes
/// `\\`, `\,`, `\=`, `\ ` are accepted).
struct ParsedLine {
  std::string measurement;
  std::vector<std::pair<std::string, std::string>> tags;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string timestamp;
};
std::optional<ParsedLine> parseLine(const std::string& line);
std::vector<std::string> splitLines(const std::string& body);

}  // namespace gw::timeseries::test
