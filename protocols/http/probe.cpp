#include "protocols/http/probe.h"

#include <fmt/format.h>

#include <cstring>

#include "protocols/http/client.h"
#include "protocols/http/curl_util.h"

namespace gw::http {
namespace {

size_t collect(char* data, size_t size, size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  const size_t len = size * n;
  if (out->size() < kMaxResponseBytes) out->append(data, std::min(len, kMaxResponseBytes));
  return len;
}

}  // namespace

ProbeResult probe(const ProbeOptions& o, Nanos timeout) {
  globalInit("gatewayctl check");
  CurlEasy curl(curl_easy_init());
  if (!curl) return {false, "cannot set up libcurl"};
  char error[CURL_ERROR_SIZE] = {};
  std::string body;
  CURL* c = curl.get();
  const long ms = static_cast<long>(timeout / kNanosPerMilli);
  curl_easy_setopt(c, CURLOPT_URL, o.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!o.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str());
  CurlSlist headers;
  if (o.empty_post) {
    for (const auto& h : o.headers) {
      curl_slist* next = curl_slist_append(headers.get(), h.c_str());
      if (!next) return {false, "out of memory"};
      static_cast<void>(headers.release());
      headers.reset(next);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  } else {
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
  }
  const CURLcode rc = curl_easy_perform(c);
  const bool tls = o.url.rfind("https:", 0) == 0;
  if (rc != CURLE_OK) {
    std::string why = error[0] ? error : curl_easy_strerror(rc);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return {false, why};
  }
  if (!o.empty_post) return {true, tls ? "TCP and TLS ok" : "TCP ok"};
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  const std::string message = trimMessage(body);
  const std::string said = message.empty() ? "" : ": " + message;
  if (status >= 200 && status < 300)
    return {true, fmt::format("{}HTTP {} to an empty write", tls ? "TLS ok, " : "", status)};
  if (status == 401 || status == 403)
    return {false, fmt::format("credentials refused (HTTP {}){}", status, said)};
  if (status == 404) return {false, fmt::format("no such path (HTTP 404){}", said)};
  if (status >= 500) return {false, fmt::format("server error (HTTP {}){}", status, said)};
  // Another 4xx to an empty body: the server answered and took the credentials.
  return {true,
          fmt::format("{}reachable (HTTP {} to an empty write)", tls ? "TLS ok, " : "", status)};
}

}  // namespace gw::http
