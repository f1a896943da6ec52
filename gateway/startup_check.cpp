#include "gateway/startup_check.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <system_error>

#include "buffer/journal.h"

namespace gw {

std::string checkStartup(boost::asio::io_context& io, const config::Config& next,
                         const config::Config& running) {
  if (next.gateway.state_dir != running.gateway.state_dir) {
    try {
      buffer::JournalOptions jo;
      jo.path = next.gateway.state_dir / "journal.db";
      jo.max_size_bytes = next.buffer.max_size;
      jo.max_age = next.buffer.max_age;
      jo.synchronous = next.buffer.synchronous;
      (void)buffer::Journal::open(jo);
    } catch (const std::exception& e) {
      return fmt::format("gateway.state_dir: {}", e.what());
    }
  }
  BuildContext context{io, next.gateway.id, next.clock.broker_reference,
                       next.clock.broker_property};
  auto build = [&](const SinkConfig& c) -> std::string {
    try {
      (void)c.build(context);
      return {};
    } catch (const std::exception& e) {
      return fmt::format("{}: {}", c.name(), e.what());
    }
  };
  for (const auto& s : next.sinks)
    if (auto why = build(*s.config); !why.empty()) return why;
  for (const auto& n : next.notify.notifiers)
    if (auto why = build(*n); !why.empty()) return why;
  return {};
}

std::string checkPaths(const config::Config& cfg, std::string& warning) {
  namespace fs = std::filesystem;
  fs::path dir = fs::absolute(cfg.gateway.state_dir);
  // The folder itself, or the nearest existing one above it (start-up creates the rest).
  fs::path existing = dir;
  std::error_code ec;
  while (!fs::exists(existing, ec) && existing.has_parent_path() &&
         existing != existing.parent_path())
    existing = existing.parent_path();
  if (!fs::is_directory(existing, ec))
    return fmt::format("gateway.state_dir: {} is not a directory", existing.string());
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    const std::string why =
        fmt::format("gateway.state_dir: {}{} is not writable: {}", existing.string(),
                    existing == dir ? "" : " (where it would be created)", std::strerror(errno));
    // Someone else's folder (the service user's, checked by a technician): only a warning,
    // the service may well write there.
    struct stat st {};
    if (::stat(existing.c_str(), &st) == 0 && st.st_uid != ::geteuid()) {
      warning = why + fmt::format(" for uid {} (fine if the service user, uid {}, can write it)",
                                  ::geteuid(), st.st_uid);
      return {};
    }
    return why;
  }
  return {};
}

}  // namespace gw
