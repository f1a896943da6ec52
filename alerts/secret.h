// Reading the PagerDuty routing key (and other notifier secrets) from a file or a systemd
// credential (LoadCredential= → $CREDENTIALS_DIRECTORY/<name>), never from the config text or
// a command line. Errors name the file, never the content (conventions: "Never log a secret").
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace gw::alerts {

struct LoadedSecret {
  std::string value;    ///< the secret, trailing whitespace/newlines removed
  std::string error;    ///< non-empty on failure: a sentence for `file:line: key: <error>`
  std::string warning;  ///< non-empty when usable but worth a log line (file readable by others)
  bool ok() const { return error.empty(); }
};

/// The content of `file` (at most 4 KiB), with trailing spaces and newlines trimmed.
LoadedSecret readSecretFile(const std::filesystem::path& file);

/// `$CREDENTIALS_DIRECTORY/<name>` as systemd's LoadCredential= provides it.
/// `credentials_dir` is the variable's value (nullptr when unset), passed in for tests.
LoadedSecret readCredential(std::string_view name, const char* credentials_dir);

/// The routing key from exactly one of `file` (config `routing_key_file`) or `credential`
/// (config `routing_key_credential`), checked to look like an Events API v2 integration key:
/// 32 printable ASCII characters without spaces.
LoadedSecret loadRoutingKey(const std::filesystem::path& file, std::string_view credential,
                            const char* credentials_dir);

}  // namespace gw::alerts
