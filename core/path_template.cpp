#include "core/path_template.h"

#include <algorithm>

namespace gw {
namespace {

// Splits a topic or filter into levels without allocating: next() yields each level in turn,
// including empty ones ("a//b" has three levels, "/a" starts with an empty one).
class Levels {
 public:
  explicit Levels(std::string_view s) : s_(s) {}
  bool done() const { return done_; }
  std::string_view next() {
    const size_t slash = s_.find('/', pos_);
    std::string_view level;
    if (slash == std::string_view::npos) {
      level = s_.substr(pos_);
      done_ = true;
    } else {
      level = s_.substr(pos_, slash - pos_);
      pos_ = slash + 1;
    }
    return level;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  bool done_ = false;
};

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::string levelError(size_t index, std::string_view level, std::string_view what) {
  std::string e = "level " + std::to_string(index + 1) + " '";
  e.append(level);
  e += "': ";
  e.append(what);
  return e;
}

}  // namespace

std::optional<PathTemplate> PathTemplate::parse(std::string_view text, std::string& error) {
  error.clear();
  if (text.empty()) {
    error = "empty template";
    return std::nullopt;
  }
  if (text.find('\0') != std::string_view::npos) {
    error = "a topic cannot contain a NUL character";
    return std::nullopt;
  }
  PathTemplate t;
  t.text_ = std::string(text);
  bool seen_device = false, seen_metric = false;
  Levels levels(text);
  for (size_t i = 0; !levels.done(); ++i) {
    const std::string_view level = levels.next();
    if (level == "#") {
      if (!levels.done()) {
        error = levelError(i, level, "'#' must be the last level");
        return std::nullopt;
      }
      t.multi_level_tail_ = true;
      continue;
    }
    if (level.find('+') != std::string_view::npos || level.find('#') != std::string_view::npos) {
      error = levelError(i, level, "'+' and '#' are filters; use {name} to capture a level");
      return std::nullopt;
    }
    const auto opens = std::count(level.begin(), level.end(), '{');
    const auto closes = std::count(level.begin(), level.end(), '}');
    if (opens == 0 && closes == 0) {
      t.levels_.push_back(Level{std::string(level), -1});
      continue;
    }
    if (opens > closes) {
      error = levelError(i, level, "unbalanced '{'");
      return std::nullopt;
    }
    if (closes > opens) {
      error = levelError(i, level, "unbalanced '}'");
      return std::nullopt;
    }
    if (opens != 1 || level.front() != '{' || level.back() != '}') {
      error = levelError(i, level, "a capture must be a whole level, like {name}");
      return std::nullopt;
    }
    const std::string_view name = level.substr(1, level.size() - 2);
    if (name.empty()) {
      error = levelError(i, level, "empty capture name");
      return std::nullopt;
    }
    if (!std::all_of(name.begin(), name.end(), isNameChar)) {
      error = levelError(i, level, "a capture name may only hold letters, digits, '_' and '-'");
      return std::nullopt;
    }
    bool duplicate = false;
    int capture;
    if (name == "device") {
      duplicate = seen_device;
      seen_device = true;
      capture = 0;
    } else if (name == "metric") {
      duplicate = seen_metric;
      seen_metric = true;
      capture = 1;
    } else {
      duplicate = std::find(t.tag_names_.begin(), t.tag_names_.end(), name) != t.tag_names_.end();
      capture = static_cast<int>(t.tag_names_.size()) + 2;
      if (!duplicate) t.tag_names_.emplace_back(name);
    }
    if (duplicate) {
      error = levelError(i, level, "capture '" + std::string(name) + "' appears twice");
      return std::nullopt;
    }
    t.levels_.push_back(Level{{}, capture});
  }
  return t;
}

bool PathTemplate::match(std::string_view topic, Series& out) const {
  if (topic.empty()) return false;  // not a valid MQTT topic
  // As with the filter: a '$' topic (a broker's $SYS) never matches a leading wildcard.
  if (topic.front() == '$' && (levels_.empty() ? multi_level_tail_ : levels_.front().capture >= 0))
    return false;
  // First check, then fill: a topic that does not match leaves `out` untouched.
  {
    Levels levels(topic);
    for (const Level& l : levels_) {
      if (levels.done()) return false;
      const std::string_view level = levels.next();
      if (l.capture < 0 ? level != l.literal : level.empty()) return false;
    }
    // '#' also matches zero remaining levels ("a/#" matches "a"), as in an MQTT filter.
    if (!levels.done() && !multi_level_tail_) return false;
  }
  if (!capturesDevice()) out.device.clear();
  if (!capturesMetric()) out.metric.clear();
  out.tags.resize(tag_names_.size());
  Levels levels(topic);
  for (const Level& l : levels_) {
    const std::string_view level = levels.next();
    if (l.capture == 0) {
      out.device.assign(level);
    } else if (l.capture == 1) {
      out.metric.assign(level);
    } else if (l.capture >= 2) {
      auto& tag = out.tags[static_cast<size_t>(l.capture - 2)];
      tag.first.assign(tag_names_[static_cast<size_t>(l.capture - 2)]);
      tag.second.assign(level);
    }
  }
  return true;
}

bool PathTemplate::capturesDevice() const {
  return std::any_of(levels_.begin(), levels_.end(), [](const Level& l) { return l.capture == 0; });
}

bool PathTemplate::capturesMetric() const {
  return std::any_of(levels_.begin(), levels_.end(), [](const Level& l) { return l.capture == 1; });
}

std::string PathTemplate::filter() const {
  std::string f;
  for (size_t i = 0; i < levels_.size(); ++i) {
    if (i > 0) f.push_back('/');
    if (levels_[i].capture < 0) {
      f += levels_[i].literal;
    } else {
      f.push_back('+');
    }
  }
  if (multi_level_tail_) {
    if (!levels_.empty()) f.push_back('/');
    f.push_back('#');
  }
  return f;
}

bool topicMatchesFilter(std::string_view filter, std::string_view topic) {
  if (filter.empty() || topic.empty()) return false;
  // MQTT 5 §4.7.2: topics starting with '$' are not matched by a leading wildcard.
  if (topic.front() == '$' && (filter.front() == '+' || filter.front() == '#')) return false;
  Levels f(filter), t(topic);
  while (!f.done()) {
    const std::string_view fl = f.next();
    if (fl == "#") return f.done();  // '#' is only valid last; it matches the parent level too
    if (t.done()) return false;      // the topic ran out before a non-'#' filter level
    const std::string_view tl = t.next();
    if (fl != "+" && fl != tl) return false;
  }
  return t.done();
}

}  // namespace gw
