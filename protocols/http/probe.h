// `gatewayctl check` for an HTTP endpoint (time-series store, notifiers): a connection test with
// the same TLS settings as the component's requests.
#pragma once

#include <string>
#include <vector>

#include "core/component.h"
#include "core/time.h"

namespace gw::http {

struct ProbeOptions {
  std::string url;
  std::string ca_file;               ///< extra CA bundle; verification is always on
  std::vector<std::string> headers;  ///< "Name: value" (secrets: never shown)
  /// true: POST an empty body with the headers (an empty line-protocol write: the server
  /// checks the credentials and stores nothing); false: TCP and TLS only, no request at all.
  bool empty_post = false;
};

/// Blocks for `timeout` at most. ok with "TCP and TLS ok" / "HTTP 204"; failed with the
/// transport error (connection refused, TLS) or, for the POST, 401/403/404/5xx and the server's
/// message.
ProbeResult probe(const ProbeOptions& options, Nanos timeout);

}  // namespace gw::http
