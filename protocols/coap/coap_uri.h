// Pure text helpers for the CoAP source, without libcoap types (unit-tested on their own):
// coap:// URIs, listen addresses, CoRE link format (RFC 6690) and its query filters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/host_port.h"

namespace gw::coap {

constexpr std::uint16_t kDefaultPort = 5683;
constexpr std::uint16_t kDefaultSecurePort = 5684;

using gw::HostPort;
using gw::parseHostPort;

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
