// Pure text helpers for the CoAP source, without libcoap types (unit-tested on their own):
// coap:// URIs, listen addresses, CoRE link format (RFC 6690) and its query filters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gw::coap {

constexpr std::uint16_t kDefaultPort = 5683;
constexpr std::uint16_t kDefaultSecurePort = 5684;

struct HostPort {
  std::string host;  ///< without brackets for IPv6
  std::uint16_t port = kDefaultPort;
};

/// "0.0.0.0:5683", "[::]:5683", "localhost:5683", "127.0.0.1" (default port). Port 0 is
/// allowed (an ephemeral port, logged at start). On error returns nullopt and sets `error`.
std::optional<HostPort> parseHostPort(std::string_view text, std::uint16_t default_port,
                                      std::string& error);

/// coap://host[:port]/path?query or coaps://… (RFC 7252 6.1). Path segments and query items
/// are percent-decoded; an empty path is "/".
struct Uri {
  bool secure = false;
  HostPort endpoint;
  std::vector<std::string> path;
  std::vector<std::string> query;
  /// "sensors/temp" (segments joined by '/', no leading slash).
  std::string pathString() const;
};
std::optional<Uri> parseUri(std::string_view text, std::string& error);

/// One link of a CoRE link-format document: target ("/sensors/temp") and attributes in
/// document order, values unquoted ("rt" -> "temperature").
struct Link {
  std::string target;
  std::vector<std::pair<std::string, std::string>> attributes;
};
/// Parses application/link-format (RFC 6690). Malformed links are skipped; commas and
/// semicolons inside quoted values are kept.
std::vector<Link> parseLinkFormat(std::string_view body);

/// A query filter of RFC 6690 4.1: `name=value`, with a trailing '*' for a prefix match.
/// `href` matches the target; other names match when any space-separated value of the
/// attribute matches (rt="temperature humidity" matches rt=humidity).
struct LinkFilter {
  std::string name;
  std::string value;
  bool prefix = false;
};
std::optional<LinkFilter> parseLinkFilter(std::string_view text, std::string& error);
bool matches(const Link& link, const LinkFilter& filter);

}  // namespace gw::coap
