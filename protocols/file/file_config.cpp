#include "protocols/file/file_config.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "core/window_stats.h"

namespace gw::file {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMinMaxSize = 1024 * 1024;

/// The sink creates the folder and its missing parents; refuse now what that would fail on
/// for good. Without side effects: nothing is created here.
void checkFolder(config::Section& s, const fs::path& folder) {
  fs::path p = folder;
  struct stat st;
  while (::stat(p.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR)
      s.fail("path",
             fmt::format("cannot use {}: {}", p.string(), std::generic_category().message(errno)));
    fs::path parent = p.parent_path();
    if (parent.empty()) parent = ".";
    if (parent == p) return;  // nothing exists, not even the root: start-up will say why
    p = std::move(parent);
  }
  if (!S_ISDIR(st.st_mode)) s.fail("path", fmt::format("{} is not a folder", p.string()));
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    s.fail("path", fmt::format("{} is not writable: {}", p.string(),
                               std::generic_category().message(errno)));
}

}  // namespace

FileOptions parseConfig(config::Section& s) {
  FileOptions o;
  auto path = s.path("path");
  if (!path) s.fail("path", "is required (the archive folder)");
  // "archive/" names the same folder as "archive"; the sink syncs the folder's parent.
  o.path = path->has_filename() ? *path : path->parent_path();
  if (auto rotate = s.duration("rotate")) {
    if (*rotate < kNanosPerMinute) s.fail("rotate", "must be at least 1m");
    // Periods aligned to the epoch then start at the same wall times every day.
    if (*rotate % kNanosPerMinute != 0 || kNanosPerDay % *rotate != 0)
      s.fail("rotate",
             "must divide a day into whole minutes (e.g. \"15m\", \"1h\", \"6h\", \"1d\")");
    o.rotate = *rotate;
  }
  o.gzip = s.boolean("gzip").value_or(o.gzip);
  if (auto age = s.duration("max_age")) {
    if (*age < o.rotate)
      s.fail("max_age", fmt::format("must be at least rotate ({}): files are removed whole",
                                    formatDuration(o.rotate)));
    o.max_age = *age;
  }
  if (auto size = s.size("max_size")) {
    if (*size < kMinMaxSize) s.fail("max_size", "must be at least 1MiB");
    o.max_size = *size;
  }
  if (auto send = s.strings("send")) {
    o.send_readings = o.send_aggregates = o.send_alerts = false;
    for (size_t i = 0; i < send->size(); ++i) {
      const std::string& what = (*send)[i];
      if (what == "readings") {
        o.send_readings = true;
      } else if (what == "aggregates") {
        o.send_aggregates = true;
      } else if (what == "alerts") {
        o.send_alerts = true;
      } else {
        s.failElement("send", i, "entries must be \"readings\", \"aggregates\" or \"alerts\"");
      }
    }
    if (send->empty())
      s.fail("send", "must name at least one kind (remove [file] to write nothing)");
  }
  s.done();
  checkFolder(s, o.path);
  return o;
}

std::unique_ptr<Sink> FileSinkConfig::build(const BuildContext&) const {
  return makeFileSink(options_);
}

std::unique_ptr<SinkConfig> parse(config::Section& s, const ParseContext&) {
  return std::make_unique<FileSinkConfig>(parseConfig(s));
}

Component component() { return Component{ComponentKind::kSink, "file", false, nullptr, &parse}; }

}  // namespace gw::file
