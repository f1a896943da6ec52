#include "test_http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cstring>
#include <stdexcept>

#include "tests/support/net.h"

namespace gw::timeseries::test {
namespace {

int listenLoopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    throw std::runtime_error("bind/listen");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("getsockname");
  }
  port = ntohs(addr.sin_port);
  return fd;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Parses one complete request from the front of `buf`, removing it; nullopt if incomplete.
std::optional<HttpRequest> takeRequest(std::string& buf) {
  const auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  HttpRequest req;
  std::size_t pos = buf.find("\r\n");
  const std::string start = buf.substr(0, pos);
  const auto sp1 = start.find(' ');
  const auto sp2 = start.find(' ', sp1 + 1);
  req.method = start.substr(0, sp1);
  req.target = start.substr(sp1 + 1, sp2 - sp1 - 1);
  while (pos < end) {
    const std::size_t next = buf.find("\r\n", pos + 2);
    const std::string line = buf.substr(pos + 2, next - pos - 2);
    if (const auto colon = line.find(':'); colon != std::string::npos) {
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      req.headers[lower(line.substr(0, colon))] = value;
    }
    pos = next;
  }
  std::size_t length = 0;
  if (auto it = req.headers.find("content-length"); it != req.headers.end())
    length = std::stoul(it->second);
  if (buf.size() < end + 4 + length) return std::nullopt;
  req.body = buf.substr(end + 4, length);
  buf.erase(0, end + 4 + length);
  return req;
}

void writeAll(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

size_t collect(char* data, size_t size, size_t nmemb, void* out) {
  static_cast<std::string*>(out)->append(data, size * nmemb);
  return size * nmemb;
}

}  // namespace

TestHttpServer::TestHttpServer(Handler handler) : handler_(std::move(handler)) {
  listen_fd_ = listenLoopback(port_);
  thread_ = std::thread([this] { run(); });
}

TestHttpServer::~TestHttpServer() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
}

std::string TestHttpServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<HttpRequest> TestHttpServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void TestHttpServer::run() {
  struct Client {
    int fd;
    std::string buf;
  };
  std::vector<Client> clients;
  while (!stop_) {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    for (const Client& c : clients) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
    if (fds[0].revents & POLLIN) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        clients.push_back({fd, {}});
        ++connections_;
      }
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Client& c = clients[i - 1];
      char chunk[65536];
      const ssize_t n = ::recv(c.fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        ::close(c.fd);
        c.fd = -1;
        continue;
      }
      c.buf.append(chunk, static_cast<std::size_t>(n));
      while (auto req = takeRequest(c.buf)) {
        const HttpResponse resp = handler_(*req);
        {
          std::lock_guard lock(mutex_);
          requests_.push_back(std::move(*req));
        }
        if (resp.hang) continue;
        std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " " + reason(resp.status) +
                          "\r\nContent-Type: text/plain\r\n";
        for (const std::string& h : resp.headers) out += h + "\r\n";
        if (resp.status != 204)
          out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
        out += "\r\n";
        if (resp.status != 204) out += resp.body;
        writeAll(c.fd, out);
      }
    }
    std::erase_if(clients, [](const Client& c) { return c.fd < 0; });
  }
  for (const Client& c : clients) ::close(c.fd);
}

std::uint16_t closedPort() { return gw::test::unusedLoopbackPort(); }

HttpResult httpGet(const std::string& url, long timeout_ms) {
  HttpResult r;
  CURL* c = curl_easy_init();
  if (!c) return r;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_cleanup(c);
  return r;
}

std::optional<std::string> gunzip(const std::string& in) {
  z_stream z{};
  if (inflateInit2(&z, 16 + 15) != Z_OK) return std::nullopt;
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  char chunk[16384];
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  }
  const bool ok = rc == Z_STREAM_END && z.avail_in == 0;
  inflateEnd(&z);
  if (!ok) return std::nullopt;
  return out;
}

std::optional<ParsedLine> parseLine(const std::string& line) {
  ParsedLine p;
  std::size_t i = 0;
  // Reads up to an unescaped delimiter from `stops`; fails on an unknown escape.
  auto token = [&](std::string_view stops, std::string& out) {
    while (i < line.size() && stops.find(line[i]) == std::string_view::npos) {
      if (line[i] == '\\') {
        if (i + 1 >= line.size() ||
            std::string_view("\\,= ").find(line[i + 1]) == std::string_view::npos)
          return false;
        ++i;
      }
      out += line[i++];
    }
    return true;
  };
  if (!token(", ", p.measurement) || p.measurement.empty()) return std::nullopt;
  while (i < line.size() && line[i] == ',') {
    ++i;
    std::pair<std::string, std::string> kv;
    if (!token(",= ", kv.first) || i >= line.size() || line[i] != '=') return std::nullopt;
    ++i;
    if (!token(",= ", kv.second) || kv.first.empty() || kv.second.empty()) return std::nullopt;
    p.tags.push_back(std::move(kv));
  }
  if (i >= line.size() || line[i] != ' ') return std::nullopt;
  ++i;
  do {
    if (i < line.size() && line[i] == ',') ++i;
    std::pair<std::string, std::string> kv;
    if (!token(",= ", kv.first) || i >= line.size() || line[i] != '=') return std::nullopt;
    ++i;
    while (i < line.size() && line[i] != ',' && line[i] != ' ') kv.second += line[i++];
    p.fields.push_back(std::move(kv));
  } while (i < line.size() && line[i] == ',');
  if (i >= line.size() || line[i] != ' ') return std::nullopt;
  p.timestamp = line.substr(i + 1);
  if (p.timestamp.empty() || p.timestamp.find(' ') != std::string::npos) return std::nullopt;
  return p;
}

std::vector<std::string> splitLines(const std::string& body) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t nl = body.find('\n', pos);
    if (nl == std::string::npos) {
      lines.push_back(body.substr(pos));
      break;
    }
    lines.push_back(body.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

}  // namespace gw::timeseries::test
