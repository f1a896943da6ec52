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

}  // namespace gw::http
