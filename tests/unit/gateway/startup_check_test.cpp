// --check-config's checks beyond parsing (gateway/startup_check.h).
#include "gateway/startup_check.h"

#include <doctest/doctest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/temp_dir.h"

using namespace gw;

namespace {

// "nobody" exists on every Debian system and is never the user running the tests.
constexpr const char* kOther = "nobody";

config::Config configNaming(const std::filesystem::path& file) {
  config::Config cfg;
  cfg.file = "/etc/iot-gateway/gateway.toml";
  cfg.paths.push_back({"mqtt.password_file", 12, file});
  return cfg;
}

}  // namespace

TEST_CASE("startup check: a file the service user cannot read is named, with file:line: key") {
  REQUIRE(::getpwnam(kOther) != nullptr);
  test::TempDir dir("gw-startup-check");
  REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
  const auto secret = dir.write("mqtt.pw", "s3cret\n");

  REQUIRE(::chmod(secret.c_str(), 0600) == 0);  // the owner's only: root's, in the field
  auto w = unreadableByUser(configNaming(secret), kOther);
  REQUIRE(w.size() == 1);
  CHECK(w[0].find("/etc/iot-gateway/gateway.toml:12: mqtt.password_file: not readable by the "
                  "service user nobody: " +
                  secret.string() + " (owner uid") == 0);
  CHECK(w[0].find("mode 0600") != std::string::npos);
  CHECK(w[0].find("s3cret") == std::string::npos);  // never the content

  REQUIRE(::chmod(secret.c_str(), 0644) == 0);
  CHECK(unreadableByUser(configNaming(secret), kOther).empty());

  // Readable, but inside a folder the user cannot enter.
  REQUIRE(::chmod(dir.path.c_str(), 0700) == 0);
  w = unreadableByUser(configNaming(secret), kOther);
  REQUIRE(w.size() == 1);
  CHECK(w[0].find("cannot be entered") != std::string::npos);
}

TEST_CASE("startup check: nothing to say for a missing user, the user itself, or a folder") {
  test::TempDir dir("gw-startup-check");
  const auto secret = dir.write("mqtt.pw", "s3cret\n");
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  CHECK(unreadableByUser(configNaming(secret), "no-such-user-gw").empty());
  CHECK(unreadableByUser(configNaming(secret), ::getpwuid(::geteuid())->pw_name).empty());
  CHECK(unreadableByUser(configNaming(dir.path), kOther).empty());  // state_dir: not a file
}

TEST_CASE("startup check: a state_dir that cannot be created is refused") {
  test::TempDir dir("gw-startup-check");
  config::Config cfg;
  cfg.gateway.state_dir = dir.write("not-a-dir", "x") / "state";
  std::string warning;
  CHECK(checkPaths(cfg, warning).find("is not a directory") != std::string::npos);
  cfg.gateway.state_dir = dir.path / "new" / "state";  // created at start
  CHECK(checkPaths(cfg, warning).empty());
  CHECK(warning.empty());
}
