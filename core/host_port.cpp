#include "core/host_port.h"

#include <arpa/inet.h>

#include <charconv>

namespace gw {

std::optional<HostPort> parseHostPort(std::string_view text, std::uint16_t default_port,
                                      std::string& error) {
  HostPort hp;
  hp.port = default_port;
  std::string_view rest = text;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      error = "unbalanced '[' in IPv6 address";
      return std::nullopt;
    }
    hp.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      error = "expected ':' after ']'";
      return std::nullopt;
    }
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos && rest.find(':') != colon) {
      error = "an IPv6 address goes in brackets: [::1]:PORT";
      return std::nullopt;
    }
    hp.host = std::string(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
  }
  if (!rest.empty()) {  // ":port"
    rest.remove_prefix(1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (rest.empty() || ec != std::errc() || p != rest.data() + rest.size() || port > 65535) {
      error = "port must be 0..65535";
      return std::nullopt;
    }
    hp.port = static_cast<std::uint16_t>(port);
  }
  if (hp.host.empty()) {
    error = "missing host (use 0.0.0.0 or [::] for every interface)";
    return std::nullopt;
  }
  return hp;
}

bool isNumericHost(std::string_view host) {
  const std::string h(host);
  unsigned char buf[16];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

}  // namespace gw
