// Fuzz target for the config loader (gateway/config.h): the input is loaded as gatewayd
// --check-config loads a file, named as a file in a folder of its own. It loads, or it throws
// ConfigError (exit 78 with a `file:line: key: reason` message); any other exception, a crash or
// a hang is a bug.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "core/log.h"
#include "gateway/config.h"
#include "tests/fuzz/fuzz_check.h"

using gw::fuzz::require;

namespace {

// One file per process (libFuzzer's -jobs run several), in a folder of its own so relative
// paths in the config resolve to nothing of ours; removed when the process exits.
struct TempConfig {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("gw_config_fuzz." + std::to_string(::getpid()));
  std::filesystem::path file = dir / "gatewayd.toml";
  TempConfig() { std::filesystem::create_directories(dir); }
  ~TempConfig() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

const std::filesystem::path& configFile() {
  static const TempConfig temp;
  return temp.file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  static const bool quiet = [] {
    gw::log::setLevel(gw::log::Level::kError);  // warnings about odd values are expected
    return true;
  }();
  (void)quiet;
  // Parsed from memory as if it were the file (Section::parse; parseFile only adds the read):
  // writing and reading a file per input made the kernel most of the cost.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const gw::config::Config c = gw::config::load(configFile(), text);
    require(c.file == configFile(), "the config names its file");
  } catch (const gw::config::ConfigError& e) {
    const std::string what = e.what();
    require(what.rfind(configFile().string() + ":", 0) == 0, "an error starts with file:");
  }
  return 0;
}
