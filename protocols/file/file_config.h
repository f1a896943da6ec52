// `[file]`, read in this folder, and the parsed config the engine builds the sink from.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "core/component.h"
#include "core/config/section.h"
#include "protocols/file/file_sink.h"

namespace gw::file {

/// Reads `[file]` (not the generic sink keys, which the engine reads). Refuses what the sink
/// would fail on for good: a folder whose nearest existing ancestor is not a writable folder.
/// Throws config::ConfigError.
FileOptions parseConfig(config::Section& s);

class FileSinkConfig final : public SinkConfig {
 public:
  explicit FileSinkConfig(FileOptions options) : options_(std::move(options)) {}
  std::string name() const override { return "file"; }
  std::string target() const override { return options_.path.string(); }
  std::unique_ptr<Sink> build(const BuildContext& context) const override;
  const FileOptions& options() const { return options_; }

 private:
  FileOptions options_;
};

/// Component::parse_sink for `[file]`.
std::unique_ptr<SinkConfig> parse(config::Section& s, const ParseContext& context);

}  // namespace gw::file
