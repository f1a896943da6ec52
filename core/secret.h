// The one secret-file reader (design: "Components"): passwords, tokens, keys and the PagerDuty
// routing key come from a file or a systemd credential (LoadCredential= →
// $CREDENTIALS_DIRECTORY/<name>), never from the config text or a command line. Errors name the
// file, never the content (conventions: "Never log a secret").
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace gw {

struct LoadedSecret {
  std::string value;    ///< the secret, trailing whitespace/newlines removed
  std::string error;    ///< non-empty on failure: a sentence for `file:line: key: <error>`
  std::string warning;  ///< non-empty when usable but worth a log line (file readable by others)
  bool ok() const { return error.empty(); }
};

/// The content of `file` with trailing spaces and newlines trimmed. Refused: a file that is not
/// a regular file, larger than 4 KiB (a secret file holds just the secret; anything bigger is a
/// wrong path), or empty. A file readable by every user is accepted with a warning.
LoadedSecret readSecretFile(const std::filesystem::path& file);

/// `$CREDENTIALS_DIRECTORY/<name>` as systemd's LoadCredential= provides it, read as above.
/// `credentials_dir` is the variable's value (nullptr when unset), passed in for tests.
LoadedSecret readCredential(std::string_view name, const char* credentials_dir);

}  // namespace gw
