// The one secret-file reader: size cap, permission warning, trimming, systemd credentials, and
// errors that name the file but never quote its content.
#include "core/secret.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"

using gw::LoadedSecret;
using gw::readCredential;
using gw::readSecretFile;

namespace {

std::filesystem::path writeFile(const gw::test::TempDir& dir, const std::string& name,
                                const std::string& content, mode_t mode) {
  const auto p = dir.write(name, content);
  ::chmod(p.c_str(), mode);
  return p;
}

}  // namespace

TEST_CASE("secret file: trimmed value, no warning for a private file") {
  gw::test::TempDir dir("gw-secret");
  const auto p = writeFile(dir, "token", "s3cret-token \r\n\n", 0600);
  const LoadedSecret s = readSecretFile(p);
  CHECK(s.ok());
  CHECK(s.value == "s3cret-token");
  CHECK(s.warning.empty());
}

TEST_CASE("secret file: readable by everyone is usable, with a warning naming the file") {
  gw::test::TempDir dir("gw-secret");
  const auto p = writeFile(dir, "token", "s3cret-token", 0644);
  const LoadedSecret s = readSecretFile(p);
  CHECK(s.ok());
  CHECK(s.warning == p.string() + " is readable by every user (mode 0644); chmod o-r it");
  CHECK(s.warning.find("s3cret") == std::string::npos);
}

TEST_CASE("secret file: refused when missing, empty, too large or not a file") {
  gw::test::TempDir dir("gw-secret");
  CHECK(readSecretFile(dir.path / "nope").error ==
        "cannot read " + (dir.path / "nope").string() + ": No such file or directory");
  CHECK(readSecretFile(writeFile(dir, "empty", "\n \n", 0600)).error ==
        (dir.path / "empty").string() + " is empty");
  const LoadedSecret big = readSecretFile(writeFile(dir, "big", std::string(4097, 'k'), 0600));
  CHECK(big.error ==
        (dir.path / "big").string() + " is 4097 bytes; a secret file holds just the secret");
  CHECK(big.value.empty());
  CHECK(readSecretFile(writeFile(dir, "max", std::string(4096, 'k'), 0600)).value.size() == 4096);
  CHECK(readSecretFile(dir.path).error == dir.path.string() + " is not a regular file");
}

TEST_CASE("systemd credential: read from CREDENTIALS_DIRECTORY, names checked") {
  gw::test::TempDir dir("gw-secret");
  writeFile(dir, "mqtt-password", "pw-from-systemd\n", 0400);
  const LoadedSecret s = readCredential("mqtt-password", dir.path.c_str());
  CHECK(s.ok());
  CHECK(s.value == "pw-from-systemd");
  CHECK(readCredential("mqtt-password", nullptr).error ==
        "credential \"mqtt-password\" needs systemd's LoadCredential= (CREDENTIALS_DIRECTORY is "
        "not set)");
  CHECK(readCredential("../x", dir.path.c_str()).error == "\"../x\" is not a credential name");
  CHECK(readCredential("..", dir.path.c_str()).error == "\"..\" is not a credential name");
  CHECK_FALSE(readCredential("", dir.path.c_str()).ok());
}
