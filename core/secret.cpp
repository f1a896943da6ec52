#include "core/secret.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gw {
namespace {

constexpr std::size_t kMaxSecretBytes = 4096;

}  // namespace

LoadedSecret readSecretFile(const std::filesystem::path& file) {
  LoadedSecret out;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    out.error = fmt::format("cannot read {}: {}", file.string(), std::strerror(errno));
    return out;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    out.error = fmt::format("{} is not a regular file", file.string());
    return out;
  }
  if (st.st_size > static_cast<off_t>(kMaxSecretBytes)) {
    ::close(fd);
    out.error = fmt::format("{} is {} bytes; a secret file holds just the secret", file.string(),
                            st.st_size);
    return out;
  }
  char buf[kMaxSecretBytes + 1];
  std::size_t n = 0;
  while (n < sizeof buf) {
    const ssize_t r = ::read(fd, buf + n, sizeof buf - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      out.error = fmt::format("cannot read {}: {}", file.string(), std::strerror(errno));
      ::close(fd);
      return out;
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
  }
  ::close(fd);
  out.value.assign(buf, n);
  std::memset(buf, 0, sizeof buf);
  while (!out.value.empty() && (out.value.back() == '\n' || out.value.back() == '\r' ||
                                out.value.back() == ' ' || out.value.back() == '\t'))
    out.value.pop_back();
  if (out.value.empty()) {
    out.error = fmt::format("{} is empty", file.string());
    return out;
  }
  if ((st.st_mode & S_IROTH) != 0)
    out.warning = fmt::format("{} is readable by every user (mode {:04o}); chmod o-r it",
                              file.string(), st.st_mode & 07777);
  return out;
}

LoadedSecret readCredential(std::string_view name, const char* credentials_dir) {
  LoadedSecret out;
  if (name.empty() || name.find('/') != std::string_view::npos || name == "." || name == "..") {
    out.error = fmt::format("\"{}\" is not a credential name", name);
    return out;
  }
  if (credentials_dir == nullptr || *credentials_dir == '\0') {
    out.error = fmt::format(
        "credential \"{}\" needs systemd's LoadCredential= (CREDENTIALS_DIRECTORY is not set)",
        name);
    return out;
  }
  return readSecretFile(std::filesystem::path(credentials_dir) / std::string(name));
}

}  // namespace gw
