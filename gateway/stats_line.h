// The periodic `stats` log line (gateway.stats_interval). By default a short human line that
// fits a `journalctl` screen; `gateway.stats_format = "json"` logs the whole `stats {…}`
// document instead (what the integration fixtures and log scrapers read).
#pragma once

#include <string>

#include "gateway/status.h"

namespace gw {

/// "stats: in 812/s, journal 123456 rows (backlog 0), kafka up 810/s, timeseries up,
/// windows 3100 open, alerts 2 firing, bad 0". Sources, notifiers and clocks appear only when
/// something is wrong with them; its length grows only with the configured sinks' names.
std::string statsLine(const StatusSnapshot& s);

/// Logs the stats line at info in the configured form.
void logStats(const StatusSnapshot& s, bool json);

}  // namespace gw
