// `[file]`: defaults, paths relative to the config file, and every refusal with its line.
#include "protocols/file/file_config.h"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <string>

#include "core/sink.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using gw::config::ConfigError;
using gw::file::FileOptions;
using gw::file::kNanosPerHour;
using gw::file::kNanosPerMinute;

namespace {

struct Parsed {
  gw::test::TempDir dir{"gw-file-config"};
  FileOptions options;
  std::string error;  ///< "line: key: reason", without the file's folder
};

/// Parses `[file]` of `text` (the table starts on line 2).
void parse(Parsed& p, const std::string& body) {
  const fs::path file = p.dir.write("gateway.toml", "# gateway\n[file]\n" + body);
  try {
    auto root = gw::config::Section::parseFile(file);
    auto table = root.table("file");
    REQUIRE(table);
    p.options = gw::file::parseConfig(*table);
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    p.error = msg.substr(msg.find("gateway.toml:") + 13);
  }
}

std::string errorOf(const std::string& body) {
  Parsed p;
  parse(p, body);
  return p.error;
}

}  // namespace

TEST_CASE("defaults; the folder is relative to the config file's folder") {
  Parsed p;
  parse(p, "path = \"archive\"\n");
  REQUIRE(p.error == "");
  CHECK(p.options.path == p.dir.path / "archive");
  CHECK(p.options.rotate == kNanosPerHour);
  CHECK_FALSE(p.options.gzip);
  CHECK_FALSE(p.options.max_age);
  CHECK_FALSE(p.options.max_size);
  CHECK(p.options.send_readings);
  CHECK(p.options.send_aggregates);
  CHECK(p.options.send_alerts);
  CHECK_FALSE(fs::exists(p.options.path));  // a check has no side effects
  Parsed q;
  parse(q, "path = \"archive/\"\n");
  CHECK(q.options.path == q.dir.path / "archive");
}

TEST_CASE("every key of the design's example") {
  Parsed p;
  parse(p, R"(path = "/var/lib/iot-gateway/archive"
rotate = "15m"
gzip = true
max_age = "30d"
max_size = "1GiB"
send = ["alerts", "aggregates"]
)");
  REQUIRE(p.error == "");
  CHECK(p.options.path == "/var/lib/iot-gateway/archive");
  CHECK(p.options.rotate == 15 * kNanosPerMinute);
  CHECK(p.options.gzip);
  CHECK(p.options.max_age == 30 * 24 * kNanosPerHour);
  CHECK(p.options.max_size == 1024ull * 1024 * 1024);
  CHECK_FALSE(p.options.send_readings);
  CHECK(p.options.send_aggregates);
  CHECK(p.options.send_alerts);
}

TEST_CASE("refusals, with the line of the key") {
  CHECK(errorOf("path = \"a\"\nbogus = 1\n") == "4: file.bogus: unknown key");
  CHECK(errorOf("gzip = true\n") == "2: file.path: is required (the archive folder)");
  CHECK(errorOf("path = \"\"\n") == "3: file.path: must not be empty");
  CHECK(errorOf("path = \"a\"\nrotate = \"30s\"\n") == "4: file.rotate: must be at least 1m");
  const std::string divide =
      ": file.rotate: must divide a day into whole minutes (e.g. \"15m\", \"1h\", \"6h\", \"1d\")";
  CHECK(errorOf("path = \"a\"\nrotate = \"7m\"\n") == "4" + divide);
  CHECK(errorOf("path = \"a\"\nrotate = \"2d\"\n") == "4" + divide);
  CHECK(errorOf("path = \"a\"\nrotate = \"90500ms\"\n") == "4" + divide);
  CHECK(
      errorOf("path = \"a\"\nrotate = \"often\"\n").starts_with("4: file.rotate: not a duration"));
  CHECK(errorOf("path = \"a\"\nmax_age = \"30m\"\n") ==
        "4: file.max_age: must be at least rotate (1h): files are removed whole");
  CHECK(errorOf("path = \"a\"\nmax_size = \"512KiB\"\n") ==
        "4: file.max_size: must be at least 1MiB");
  CHECK(errorOf("path = \"a\"\nmax_size = \"lots\"\n").starts_with("4: file.max_size: not a size"));
  CHECK(errorOf("path = \"a\"\nsend = [\n  \"readings\",\n  \"events\",\n]\n") ==
        "6: file.send: entries must be \"readings\", \"aggregates\" or \"alerts\"");
  CHECK(errorOf("path = \"a\"\nsend = []\n") ==
        "4: file.send: must name at least one kind (remove [file] to write nothing)");
}

TEST_CASE("a folder that start-up could never create is refused at parse time") {
  Parsed p;
  p.dir.write("plain", "x");
  parse(p, "path = \"plain/archive/2026\"\n");
  CHECK(p.error == "3: file.path: " + (p.dir.path / "plain").string() + " is not a folder");
  Parsed q;
  q.dir.write("plain", "x");
  parse(q, "path = \"plain\"\n");
  CHECK(q.error == "3: file.path: " + (q.dir.path / "plain").string() + " is not a folder");
}

TEST_CASE("component(): the registry's entry builds a sink named file") {
  const gw::Component c = gw::file::component();
  CHECK(c.kind == gw::ComponentKind::kSink);
  CHECK(c.table == "file");
  CHECK_FALSE(c.named);
  CHECK((c.parse_source == nullptr));
  REQUIRE((c.parse_sink != nullptr));

  gw::test::TempDir dir("gw-file-config");
  auto root =
      gw::config::Section::parseFile(dir.write("gateway.toml", "[file]\npath = \"archive\"\n"));
  auto table = root.table("file");
  REQUIRE(table);
  const auto config = c.parse_sink(*table, gw::ParseContext{"gw", ""});
  CHECK(config->name() == "file");
  CHECK(config->target() == (dir.path / "archive").string());
  boost::asio::io_context io;
  const auto sink = config->build(gw::BuildContext{io, "gw"});
  CHECK(sink->name() == "file");
}
