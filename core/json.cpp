#include "core/json.h"

#include <charconv>
#include <cmath>

namespace gw::json {

void appendString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void appendStringMap(std::string& out, const std::vector<std::pair<std::string, std::string>>& kv) {
  out.push_back('{');
  bool first = true;
  for (const auto& [k, v] : kv) {
    if (!first) out.push_back(',');
    first = false;
    appendString(out, k);
    out.push_back(':');
    appendString(out, v);
  }
  out.push_back('}');
}

void appendNumber(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  // Shortest round trip writes 7.5e20 as the integer 750000000000000000000, valid JSON that
  // parsers holding integers in 64 bits (simdjson, Jackson's long) refuse or misread; from 2^63
  // on, an exponent keeps it a float for every reader.
  auto [p, ec] = std::fabs(v) >= 9.2233720368547758e18
                     ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific)
                     : std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

}  // namespace gw::json
