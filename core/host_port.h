// The one host:port parser: listen addresses ("0.0.0.0:5683", "[::1]:9108") and the authority
// of a URI ("broker.local:1883"). Every component that reads an address uses it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gw {

struct HostPort {
  std::string host;  ///< without brackets for IPv6
  std::uint16_t port = 0;
};

/// "0.0.0.0:5683", "[::]:5683", "localhost:5683", "127.0.0.1" (then `default_port`). Port 0 is
/// allowed (an ephemeral port); callers that need a real one check. An IPv6 address goes in
/// brackets. On error returns nullopt and sets `error` (a sentence for `file:line: key: …`).
std::optional<HostPort> parseHostPort(std::string_view text, std::uint16_t default_port,
                                      std::string& error);

/// True when `host` is a numeric IPv4 or IPv6 address (no name to resolve).
bool isNumericHost(std::string_view host);

}  // namespace gw
