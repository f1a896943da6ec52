// `[metrics] listen`: off by default, ADDRESS:PORT, refused with file:line: key: reason.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gateway/config.h"

namespace fs = std::filesystem;

namespace {

gw::config::Config loadWith(const std::string& extra) {
  char tmpl[] = "/tmp/gw-metrics-config-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  const fs::path file = dir / "gateway.toml";
  std::ofstream(file) << "[gateway]\nstate_dir = \"state\"\n[mqtt]\nuri = "
                         "\"tcp://127.0.0.1:1883\"\n[[mqtt.subscribe]]\ntopic = \"a/+/+\"\n"
                         "template = \"a/{device}/{metric}\"\n"
                      << extra;
  struct Cleanup {
    fs::path d;
    ~Cleanup() { fs::remove_all(d); }
  } cleanup{dir};
  return gw::config::load(file);
}

}  // namespace

TEST_CASE("[metrics] is off by default") { CHECK_FALSE(loadWith("").metrics); }

TEST_CASE("[metrics] listen parses IPv4 and IPv6") {
  auto c = loadWith("[metrics]\nlisten = \"127.0.0.1:9108\"\n");
  REQUIRE(c.metrics);
  CHECK(c.metrics->host == "127.0.0.1");
  CHECK(c.metrics->port == 9108);
  c = loadWith("[metrics]\nlisten = \"[::1]:9200\"\n");
  REQUIRE(c.metrics);
  CHECK(c.metrics->host == "::1");
  CHECK(c.metrics->port == 9200);
}

TEST_CASE("[metrics] errors say file:line: key: reason") {
  CHECK_THROWS_WITH_AS(loadWith("[metrics]\nlisten = \"localhost\"\n"),
                       doctest::Contains(":9: metrics.listen: expected ADDRESS:PORT"),
                       gw::config::ConfigError);
  CHECK_THROWS_WITH_AS(loadWith("[metrics]\nlisten = \"127.0.0.1:99999\"\n"),
                       doctest::Contains("metrics.listen: port must be 1..65535"),
                       gw::config::ConfigError);
  CHECK_THROWS_WITH_AS(loadWith("[metrics]\nlisten = \"localhost:9108\"\n"),
                       doctest::Contains("metrics.listen: the address must be numeric"),
                       gw::config::ConfigError);
  CHECK_THROWS_WITH_AS(loadWith("[metrics]\nport = 9108\n"),
                       doctest::Contains("metrics.listen: is required"), gw::config::ConfigError);
}
