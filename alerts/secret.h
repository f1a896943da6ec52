// The PagerDuty routing key: read with the one secret reader (core/secret.h), then checked to
// look like an Events API v2 integration key, so a wrong file fails at start-up, not at the
// first page.
#pragma once

#include <filesystem>
#include <string_view>

#include "core/secret.h"

namespace gw::alerts {

/// The routing key from exactly one of `file` (config `routing_key_file`) or `credential`
/// (config `routing_key_credential`), checked to look like an Events API v2 integration key:
/// 32 printable ASCII characters without spaces.
LoadedSecret loadRoutingKey(const std::filesystem::path& file, std::string_view credential,
                            const char* credentials_dir);

}  // namespace gw::alerts
