#include "alerts/secret.h"

#include <fmt/format.h>

namespace gw::alerts {
namespace {

constexpr std::size_t kRoutingKeyLength = 32;

}  // namespace

LoadedSecret loadRoutingKey(const std::filesystem::path& file, std::string_view credential,
                            const char* credentials_dir) {
  LoadedSecret out;
  if (file.empty() == credential.empty()) {
    out.error = "set exactly one of routing_key_file and routing_key_credential";
    return out;
  }
  out = file.empty() ? readCredential(credential, credentials_dir) : readSecretFile(file);
  if (!out.ok()) return out;
  const std::string where =
      file.empty() ? fmt::format("credential \"{}\"", credential) : file.string();
  for (const char c : out.value) {
    if (c <= ' ' || c >= 0x7f) {
      out.value.clear();
      out.error = fmt::format("the routing key in {} contains spaces or control characters", where);
      return out;
    }
  }
  if (out.value.size() != kRoutingKeyLength) {
    const std::size_t n = out.value.size();
    out.value.clear();
    out.error = fmt::format(
        "the routing key in {} has {} characters; a PagerDuty Events API v2 integration key "
        "has {}",
        where, n, kRoutingKeyLength);
  }
  return out;
}

}  // namespace gw::alerts
