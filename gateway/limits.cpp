#include "gateway/limits.h"

#include <fmt/format.h>

namespace gw::config {

void readLimits(Section* s, const Section& top, std::span<const alerts::Rule> rules,
                LimitsConfig& out) {
  if (s) {
    if (auto n = s->integer("max_series", 1, 1'000'000'000)) out.max_series = *n;
    out.series_idle = s->duration("series_idle", kNanosPerSecond).value_or(out.series_idle);
  }
  for (const alerts::Rule& r : rules) {
    if (r.no_data_for == 0 || r.no_data_for < out.series_idle) continue;
    const std::string why = fmt::format(
        "must be longer than every no_data_for (alert '{}' has {} s): a silent series would be "
        "forgotten before its alert fires",
        r.name, r.no_data_for / kNanosPerSecond);
    if (s && s->has("series_idle")) s->fail("series_idle", why);
    top.fail("limits", fmt::format("series_idle (default 24h) {}", why));
  }
  if (s) s->done();
}

}  // namespace gw::config
