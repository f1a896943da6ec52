#include "protocols/coap/coap_uri.h"

#include <charconv>

namespace gw::coap {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percentDecode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hexValue(in[i + 1]), lo = hexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool matchValue(std::string_view have, const LinkFilter& f) {
  if (f.prefix) return have.substr(0, f.value.size()) == f.value;
  return have == f.value;
}

}  // namespace

std::string Uri::pathString() const {
  std::string s;
  for (const auto& seg : path) {
    if (!s.empty()) s += '/';
    s += seg;
  }
  return s;
}

std::optional<Uri> parseUri(std::string_view text, std::string& error) {
  Uri uri;
  std::string_view rest;
  if (text.substr(0, 7) == "coap://") {
    rest = text.substr(7);
  } else if (text.substr(0, 8) == "coaps://") {
    uri.secure = true;
    rest = text.substr(8);
  } else {
    error = "expected coap://HOST[:PORT]/PATH or coaps://…";
    return std::nullopt;
  }
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos) {
    error = "a CoAP URI has no fragment ('#')";
    return std::nullopt;
  }
  std::string_view query;
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  auto hp = parseHostPort(authority, uri.secure ? kDefaultSecurePort : kDefaultPort, error);
  if (!hp) return std::nullopt;
  if (hp->port == 0) {
    error = "port must be 1..65535";
    return std::nullopt;
  }
  uri.endpoint = *hp;
  std::string decoded;
  if (!path.empty()) {
    path.remove_prefix(1);
    if (!path.empty()) {
      for (auto seg : split(path, '/')) {
        if (!percentDecode(seg, decoded)) {
          error = "bad percent-encoding in the path";
          return std::nullopt;
        }
        uri.path.push_back(decoded);
      }
      if (uri.path.back().empty()) uri.path.pop_back();  // "…/temp/"
    }
  }
  if (!query.empty()) {
    for (auto item : split(query, '&')) {
      if (!percentDecode(item, decoded)) {
        error = "bad percent-encoding in the query";
        return std::nullopt;
      }
      uri.query.push_back(decoded);
    }
  }
  return uri;
}

std::vector<Link> parseLinkFormat(std::string_view body) {
  std::vector<Link> links;
  size_t i = 0;
  const size_t n = body.size();
  while (i < n) {
    // Skip separators and whitespace up to the next '<'.
    while (i < n && body[i] != '<') ++i;
    if (i >= n) break;
    const size_t close = body.find('>', i);
    if (close == std::string_view::npos) break;
    Link link;
    link.target = std::string(body.substr(i + 1, close - i - 1));
    i = close + 1;
    // Attributes: ;name[=value] until ',' outside quotes or the end.
    while (i < n && body[i] != ',') {
      if (body[i] != ';') {
        ++i;
        continue;
      }
      ++i;
      const size_t name_start = i;
      while (i < n && body[i] != '=' && body[i] != ';' && body[i] != ',') ++i;
      std::string name(trim(body.substr(name_start, i - name_start)));
      std::string value;
      if (i < n && body[i] == '=') {
        ++i;
        if (i < n && body[i] == '"') {
          ++i;
          while (i < n && body[i] != '"') {
            if (body[i] == '\\' && i + 1 < n) ++i;
            value += body[i++];
          }
          if (i < n) ++i;  // closing quote
        } else {
          const size_t v_start = i;
          while (i < n && body[i] != ';' && body[i] != ',') ++i;
          value = std::string(trim(body.substr(v_start, i - v_start)));
        }
      }
      if (!name.empty()) link.attributes.emplace_back(std::move(name), std::move(value));
    }
    if (!link.target.empty()) links.push_back(std::move(link));
    if (i < n) ++i;  // ','
  }
  return links;
}

std::optional<LinkFilter> parseLinkFilter(std::string_view text, std::string& error) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    error = "expected NAME=VALUE, e.g. \"rt=temperature\" (a trailing * matches a prefix)";
    return std::nullopt;
  }
  LinkFilter f;
  f.name = std::string(text.substr(0, eq));
  f.value = std::string(text.substr(eq + 1));
  if (!f.value.empty() && f.value.back() == '*') {
    f.prefix = true;
    f.value.pop_back();
  }
  if (f.value.find('*') != std::string::npos) {
    error = "'*' is only allowed at the end of the value";
    return std::nullopt;
  }
  return f;
}

bool matches(const Link& link, const LinkFilter& f) {
  if (f.name == "href") return matchValue(link.target, f);
  for (const auto& [name, value] : link.attributes) {
    if (name != f.name) continue;
    for (auto item : split(value, ' ')) {
      if (!item.empty() && matchValue(item, f)) return true;
    }
    if (value.empty() && f.value.empty()) return true;
  }
  return false;
}

}  // namespace gw::coap
