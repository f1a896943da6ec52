// gatewayctl's views: the control socket's JSON turned into tables for people, and the health
// verdict (exit code) each command gives. Pure functions, so tests can check them without a
// daemon, e.g. that `status` fits an 80-column terminal whatever the errors say.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gw::ctl {

struct Style {
  bool color = false;  ///< ANSI colours (only on a TTY, and not with NO_COLOR)
  size_t width = 80;   ///< lines are cut to this many columns; 0 = no limit
};

struct Rendered {
  std::string text;
  int exit = 0;  ///< kOk or kDegraded (see client.h)
};

/// Each throws std::runtime_error when `json` is not a JSON object.
Rendered renderStatus(std::string_view json, const Style& style);
Rendered renderSensors(std::string_view json, const Style& style);
Rendered renderBuffer(std::string_view json, const Style& style);
Rendered renderSinks(std::string_view json, const Style& style);
Rendered renderAlerts(std::string_view json, const Style& style);
/// `gatewayctl tail`: the readings of the answer, oldest first; with `header` the device line
/// and the column heads first (false for the later pages of --follow). Exit 1 when none.
Rendered renderTail(std::string_view json, const Style& style, bool header = true);
/// `gatewayctl bad`: counts by reason and device, then the newest dead letters with their
/// payload excerpts. Exit 1 when there was bad input.
Rendered renderBad(std::string_view json, const Style& style);
/// `gatewayctl check`: each component's connection test. Exit 1 when one failed.
Rendered renderCheck(std::string_view json, const Style& style);
/// `gatewayctl top`: one frame from the `status` and `alerts` answers; `clock` is the time shown
/// in its head line. Exit 1 when status or alerts would give it.
Rendered renderTop(std::string_view status_json, std::string_view alerts_json, const Style& style,
                   std::string_view clock);

/// The daemon's {"error":"…"} answer, or empty when the document is not one.
std::string answerError(std::string_view json);

/// Columns a line takes: UTF-8 code points, ANSI escape sequences not counted.
size_t visibleWidth(std::string_view line);
/// Cuts a line to `width` columns, ending in "..." when cut; escape sequences are kept whole
/// and a colour is reset at the cut.
std::string fitLine(std::string_view line, size_t width);
/// "850ms", "42s", "5m 10s", "2h 05m", "3d 04h".
std::string formatAge(double seconds);
/// "512 B", "12.3 KiB", "4.0 MiB", "1.5 GiB".
std::string formatBytes(double bytes);
/// A duration given in milliseconds, for people: "12.5 ms", "15.9 s", then as formatAge.
std::string formatMillis(double ms);

}  // namespace gw::ctl
