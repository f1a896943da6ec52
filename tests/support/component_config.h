// Tests of a component's config: the table a component parses, taken from a file gatewayd's
// whole-file validation (config::load) accepted.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/config/section.h"
#include "gateway/config.h"

namespace gw::test {

/// The table at a dotted path ("coap", "notify.webhook.ops") of the config `cfg` was loaded
/// from (read again from cfg.file), or nullopt.
inline std::optional<config::Section> tableOf(const config::Config& cfg, std::string_view dotted) {
  std::optional<config::Section> t = config::Section::parseFile(cfg.file);
  while (t && !dotted.empty()) {
    const auto dot = dotted.find('.');
    const std::string key(dotted.substr(0, dot));
    t = t->has(key) ? t->table(key) : std::nullopt;
    dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
  }
  return t;
}

}  // namespace gw::test
