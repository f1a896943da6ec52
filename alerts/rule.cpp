#include "alerts/rule.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace gw::alerts {
namespace {

constexpr std::string_view kStatistics[] = {"count", "min",   "max",  "avg",
                                            "sum",   "first", "last", "stddev"};

bool validNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

void checkPattern(std::vector<RuleError>& errors, const std::string& key, std::string_view p) {
  if (std::string why = checkGlob(p); !why.empty()) errors.push_back({key, std::move(why)});
}

}  // namespace

const char* toString(Severity s) {
  switch (s) {
    case Severity::kCritical:
      return "critical";
    case Severity::kError:
      return "error";
    case Severity::kWarning:
      return "warning";
    case Severity::kInfo:
      return "info";
  }
  return "warning";
}

std::optional<Severity> parseSeverity(std::string_view s) {
  if (s == "critical") return Severity::kCritical;
  if (s == "error") return Severity::kError;
  if (s == "warning") return Severity::kWarning;
  if (s == "info") return Severity::kInfo;
  return std::nullopt;
}

std::string checkGlob(std::string_view p) {
  if (p.empty()) return "must not be empty (use \"*\" for any)";
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return fmt::format("control character at position {}", i + 1);
    if (c == '\\') {
      if (i + 1 == p.size()) return "ends with a lone '\\' (write '\\\\' for a backslash)";
      ++i;
      continue;
    }
    if (c == '[' || c == ']' || c == '{' || c == '}')
      return fmt::format(
          "'{}' at position {} is not supported: only * and ? are wildcards (write '\\{}' for "
          "the character itself)",
          c, i + 1, c);
  }
  return {};
}

bool globMatch(std::string_view pattern, std::string_view text) {
  // Greedy matching with backtracking to the last star only: linear-ish, no recursion.
  std::size_t p = 0, t = 0;
  std::size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      const char c = pattern[p];
      if (c == '*') {
        star_p = ++p;
        star_t = t;
        continue;
      }
      if (c == '?') {
        ++p;
        ++t;
        continue;
      }
      char literal = c;
      std::size_t len = 1;
      if (c == '\\' && p + 1 < pattern.size()) {
        literal = pattern[p + 1];
        len = 2;
      }
      if (literal == text[t]) {
        p += len;
        ++t;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool isKnownStatistic(std::string_view name) {
  if (std::find(std::begin(kStatistics), std::end(kStatistics), name) != std::end(kStatistics))
    return true;
  // pNN: p1 … p99, no leading zero.
  if (name.size() < 2 || name.size() > 3 || name[0] != 'p' || name[1] < '1' || name[1] > '9')
    return false;
  return name.size() == 2 || (name[2] >= '0' && name[2] <= '9');
}

namespace {

bool matchesParts(const Rule& rule, std::string_view device, std::string_view metric,
                  const Tags& tags) {
  if (!globMatch(rule.metric, metric) || !globMatch(rule.device, device)) return false;
  for (const TagMatcher& m : rule.tags) {
    const auto it =
        std::find_if(tags.begin(), tags.end(), [&](const auto& kv) { return kv.first == m.key; });
    if (it == tags.end() || !globMatch(m.pattern, it->second)) return false;
  }
  return true;
}

}  // namespace

bool matches(const Rule& rule, const Series& series) {
  return matchesParts(rule, series.device, series.metric, series.tags);
}

bool matches(const Rule& rule, const InternedSeries& series) {
  return matchesParts(rule, series.device, series.metric, series.tags);
}

std::vector<RuleError> validate(const Rule& r,
                                std::optional<std::span<const std::string>> notifiers) {
  std::vector<RuleError> e;
  if (r.name.empty()) {
    e.push_back({"name", "must not be empty"});
  } else if (r.name.size() > kMaxRuleName) {
    e.push_back({"name", fmt::format("at most {} characters", kMaxRuleName)});
  } else if (!std::all_of(r.name.begin(), r.name.end(), validNameChar)) {
    e.push_back({"name", "only letters, digits, '.', '_' and '-' (it is part of dedup keys)"});
  }
  checkPattern(e, "device", r.device);
  checkPattern(e, "metric", r.metric);
  std::set<std::string_view> tag_keys;
  for (const TagMatcher& m : r.tags) {
    if (m.key.empty()) {
      e.push_back({"tags", "a tag name must not be empty"});
      continue;
    }
    if (!tag_keys.insert(m.key).second) e.push_back({"tags." + m.key, "given twice"});
    checkPattern(e, "tags." + m.key, m.pattern);
  }

  auto finite = [&](const char* key, const std::optional<double>& v) {
    if (v && !std::isfinite(*v)) e.push_back({key, "must be a finite number"});
  };
  finite("above", r.above);
  finite("below", r.below);
  finite("clear_below", r.clear_below);
  finite("clear_above", r.clear_above);

  const bool threshold = r.above || r.below;
  if (r.no_data_for < 0) e.push_back({"no_data_for", "must be positive"});
  if (!threshold && r.no_data_for == 0) {
    e.push_back({"above", "a rule needs a threshold (above or below) or no_data_for"});
  }
  if (r.above && r.below)
    e.push_back({"below", "a rule has either above or below, not both (write two rules)"});
  if (threshold && r.no_data_for > 0)
    e.push_back(
        {"no_data_for", "cannot be combined with above/below in one rule (write a separate rule)"});

  if (r.clear_below && !r.above)
    e.push_back({"clear_below", r.below ? "belongs to an `above` rule; a `below` rule clears "
                                          "with clear_above"
                                        : "only applies with `above`"});
  if (r.clear_above && !r.below)
    e.push_back({"clear_above", r.above ? "belongs to a `below` rule; an `above` rule clears "
                                          "with clear_below"
                                        : "only applies with `below`"});
  if (r.above && r.clear_below && *r.clear_below > *r.above)
    e.push_back({"clear_below", fmt::format("{} is above the trigger threshold above = {}; it "
                                            "must be at most that",
                                            *r.clear_below, *r.above)});
  if (r.below && r.clear_above && *r.clear_above < *r.below)
    e.push_back({"clear_above", fmt::format("{} is below the trigger threshold below = {}; it "
                                            "must be at least that",
                                            *r.clear_above, *r.below)});

  if (r.for_duration < 0) e.push_back({"for", "must not be negative"});
  if (r.for_duration > 0 && !threshold && r.no_data_for > 0)
    e.push_back({"for", "does not apply to a no_data_for rule (no_data_for is the duration)"});
  if (r.min_retrigger < 0) e.push_back({"min_retrigger", "must not be negative"});

  if (r.on != "value" && !isKnownStatistic(r.on))
    e.push_back({"on", fmt::format("unknown statistic \"{}\" (value, count, min, max, avg, sum, "
                                   "stddev, first, last or pNN)",
                                   r.on)});
  if (!parseSeverity(r.severity))
    e.push_back({"severity",
                 fmt::format("\"{}\" is not one of critical, error, warning, info", r.severity)});

  std::set<std::string_view> targets;
  for (const std::string& n : r.notify) {
    if (!targets.insert(n).second) {
      e.push_back({"notify", fmt::format("\"{}\" is listed twice", n)});
      continue;
    }
    if (notifiers && std::find(notifiers->begin(), notifiers->end(), n) == notifiers->end()) {
      std::string known;
      for (const std::string& k : *notifiers) known += (known.empty() ? "" : ", ") + k;
      e.push_back({"notify", fmt::format("unknown notifier \"{}\" (configured: {})", n,
                                         known.empty() ? "none" : known)});
    }
  }
  return e;
}

std::vector<RuleError> validateRules(std::span<const Rule> rules,
                                     std::optional<std::span<const std::string>> notifiers) {
  std::vector<RuleError> out;
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const std::string prefix = fmt::format("alert[{}].", i);
    for (RuleError& err : validate(rules[i], notifiers))
      out.push_back({prefix + err.key, std::move(err.message)});
    if (!rules[i].name.empty() && !names.insert(rules[i].name).second)
      out.push_back({prefix + "name", fmt::format("\"{}\" is used by another rule; names "
                                                  "must be unique",
                                                  rules[i].name)});
  }
  return out;
}

}  // namespace gw::alerts
