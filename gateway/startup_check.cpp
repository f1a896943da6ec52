#include "gateway/startup_check.h"

#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
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

std::vector<std::string> unreadableByUser(const config::Config& cfg, const char* user) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  const passwd* pw = ::getpwnam(user);
  if (pw == nullptr || pw->pw_uid == ::geteuid()) return out;
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  std::vector<gid_t> groups(64);
  int n = static_cast<int>(groups.size());
  if (::getgrouplist(pw->pw_name, gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(pw->pw_name, gid, groups.data(), &n) < 0) n = 0;
  }
  groups.resize(static_cast<size_t>(std::max(n, 0)));
  auto allowed = [&](const struct stat& st, mode_t u, mode_t g, mode_t o) {
    if (uid == 0) return true;
    if (st.st_uid == uid) return (st.st_mode & u) != 0;
    for (gid_t x : groups)
      if (x == st.st_gid) return (st.st_mode & g) != 0;
    return (st.st_mode & o) != 0;
  };
  for (const config::PathRef& ref : cfg.paths) {
    struct stat st {};
    if (::stat(ref.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    std::string why;
    if (!allowed(st, S_IRUSR, S_IRGRP, S_IROTH)) {
      why = fmt::format("{} (owner uid {}, group gid {}, mode {:04o})", ref.path.string(),
                        st.st_uid, st.st_gid, st.st_mode & 07777);
    } else {
      for (fs::path dir = ref.path.parent_path(); !dir.empty(); dir = dir.parent_path()) {
        struct stat ds {};
        if (::stat(dir.c_str(), &ds) == 0 && !allowed(ds, S_IXUSR, S_IXGRP, S_IXOTH)) {
          why = fmt::format("{} (its folder {} cannot be entered: mode {:04o})", ref.path.string(),
                            dir.string(), ds.st_mode & 07777);
          break;
        }
        if (dir == dir.parent_path()) break;
      }
    }
    if (why.empty()) continue;
    const group* gr = ::getgrgid(gid);
    out.push_back(fmt::format(
        "{}:{}: {}: not readable by the service user {}: {}; e.g. chgrp {} FILE && chmod 0640 "
        "FILE, or use LoadCredential=",
        cfg.file.string(), ref.line, ref.key, user, why, gr ? gr->gr_name : user));
  }
  return out;
}

}  // namespace gw
