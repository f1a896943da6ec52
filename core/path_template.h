// Path templates, shared by every source (MQTT topics, CoAP paths):
// "plant1/{line}/{device}/{metric}" — literal levels must match, each
// `{name}` captures one whole level; `{device}` and `{metric}` fill the series, any other name
// becomes a tag (in template order). A final `#` level matches any remaining levels.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"

namespace gw {

class PathTemplate {
 public:
  /// Parses a template. On error returns nullopt and sets `error` (e.g. "level 3: unbalanced
  /// '{'", "duplicate capture 'device'", "'+' is a filter, use {name}").
  static std::optional<PathTemplate> parse(std::string_view text, std::string& error);

  /// Matches `topic`; on success fills device/metric/tags of `out` (reusing its strings'
  /// capacity) and returns true. An empty captured level does not match.
  bool match(std::string_view topic, Series& out) const;

  bool capturesDevice() const;
  bool capturesMetric() const;
  /// The MQTT subscription filter covering exactly this template ("plant1/+/+/+").
  std::string filter() const;
  const std::string& text() const { return text_; }

 private:
  struct Level {
    std::string literal;  ///< for a literal level
    int capture = -1;     ///< -1 literal, 0 device, 1 metric, 2+ tag index + 2
  };
  std::string text_;
  std::vector<Level> levels_;
  std::vector<std::string> tag_names_;
  bool multi_level_tail_ = false;
};

/// True when `topic` matches the MQTT filter `filter` (+ and # wildcards, $-topics rule).
bool topicMatchesFilter(std::string_view filter, std::string_view topic);

}  // namespace gw
