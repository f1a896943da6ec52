// Alert rules (design: "Alerts"; config: `[[alert]]`). Plain structs that the config layer
// fills from TOML, plus the checks it runs on them and the matching the engine uses.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/time.h"

namespace gw::alerts {

/// PagerDuty's severity enum; our names are the same strings.
enum class Severity : std::uint8_t { kCritical, kError, kWarning, kInfo };

const char* toString(Severity s);
std::optional<Severity> parseSeverity(std::string_view s);

/// Minimum time between two trigger events of one rule × series unless the rule says otherwise.
constexpr Nanos kDefaultMinRetrigger = 5 * 60 * kNanosPerSecond;

/// `tags = { line = "3", zone = "north-*" }`: the series must carry the tag and its value
/// must match the glob. A missing tag never matches, not even `*`.
struct TagMatcher {
  std::string key;
  std::string pattern;
};

/// One `[[alert]]` table. Defaults are the config defaults.
struct Rule {
  std::string name;              ///< [A-Za-z0-9._-], at most kMaxRuleName; part of dedup keys
  std::string device = "*";      ///< glob: `*` any run, `?` one character, `\` escapes
  std::string metric = "*";      ///< glob
  std::vector<TagMatcher> tags;  ///< all must match
  /// "value" (each reading) or a window statistic ("count", "min", "max", "avg", "p95", …).
  std::string on = "value";
  std::optional<double> above;        ///< fires when the value is > above …
  std::optional<double> clear_below;  ///< … and clears when it is < clear_below (default above)
  std::optional<double> below;        ///< fires when the value is < below …
  std::optional<double> clear_above;  ///< … and clears when it is > clear_above (default below)
  Nanos for_duration = 0;             ///< `for`: stay beyond the threshold this long (event time)
  Nanos no_data_for = 0;              ///< > 0: a silent-sensor rule (wall time, see AlertEngine)
  std::string severity = "warning";   ///< critical | error | warning | info
  std::vector<std::string> notify;    ///< notifier names; empty = Kafka only
  Nanos min_retrigger = kDefaultMinRetrigger;  ///< see AlertEngine: re-trigger interval
};

constexpr std::size_t kMaxRuleName = 64;

/// A problem with one rule. `key` is the config key it concerns ("clear_below", "tags.line",
/// "notify"), so the config layer can print `file:line: key: message`.
struct RuleError {
  std::string key;
  std::string message;
};

/// Checks one rule. `notifiers`, when given, are the configured notifier names, and each
/// `notify` entry must be one of them. Returns every problem found, empty when the rule is fine.
std::vector<RuleError> validate(const Rule& rule,
                                std::optional<std::span<const std::string>> notifiers = {});

/// validate() on each rule plus the checks across rules (unique names). Each error's key is
/// prefixed with the rule's index: "alert[1].clear_below".
std::vector<RuleError> validateRules(std::span<const Rule> rules,
                                     std::optional<std::span<const std::string>> notifiers = {});

/// Empty when `pattern` is a valid glob, else what is wrong with it. Only `*` and `?` are
/// wildcards; `\` makes the next character literal; `[`, `]`, `{`, `}` must be escaped (they
/// look like shell classes and alternations, which are not supported).
std::string checkGlob(std::string_view pattern);
/// Matches a glob checked by checkGlob(). Byte-wise: `?` is one byte.
bool globMatch(std::string_view pattern, std::string_view text);

/// Window statistics a rule may name in `on` (besides "value"): count, min, max, avg, sum,
/// stddev, first, last and pNN (1–99). Whether the windows compute it is the config's check.
bool isKnownStatistic(std::string_view name);

/// True when the rule's device, metric and tag globs select `series` (ignores `on`).
bool matches(const Rule& rule, const Series& series);
bool matches(const Rule& rule, const InternedSeries& series);

}  // namespace gw::alerts
