// libcurl plumbing of the HTTP client: RAII handles, a once-only global init, and how much of a
// server's answer we keep. Private to protocols/http (it pulls in curl.h); everything else uses
// protocols/http/client.h.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace gw::http {

struct CurlEasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct CurlMultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlCharDeleter {
  void operator()(char* p) const { curl_free(p); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;
using CurlMulti = std::unique_ptr<CURLM, CurlMultiDeleter>;
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistDeleter>;
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;
using CurlString = std::unique_ptr<char, CurlCharDeleter>;

/// Response bytes kept per request: enough for any error message, bounded whatever a server
/// sends.
constexpr std::size_t kMaxResponseBytes = 64 * 1024;

/// curl_global_init, once per process. Throws std::runtime_error naming `who` on failure.
void globalInit(std::string_view who);

}  // namespace gw::http
