#include "protocols/http/curl_util.h"

#include <fmt/format.h>

#include <mutex>
#include <stdexcept>

namespace gw::http {

void globalInit(std::string_view who) {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK)
    throw std::runtime_error(fmt::format("{}: curl_global_init: {}", who, curl_easy_strerror(rc)));
}

std::string trimMessage(std::string_view s) {
  constexpr std::size_t kMaxErrorChars = 300;
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  s = s.substr(first, s.find_last_not_of(kSpace) - first + 1);
  if (s.size() <= kMaxErrorChars) return std::string(s);
  std::size_t n = kMaxErrorChars;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  std::string r(s.substr(0, n));
  r += "…";
  return r;
}

}  // namespace gw::http
