#include "gateway/ctl/render.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "core/time.h"
#include "gateway/ctl/client.h"

namespace gw::ctl {
namespace {

constexpr const char* kGreen = "\033[32m";
constexpr const char* kRed = "\033[1;31m";
constexpr const char* kYellow = "\033[33m";
constexpr const char* kBold = "\033[1m";
constexpr const char* kReset = "\033[0m";

/// A tolerant view of a JSON value: a missing key or a wrong type reads as absent, so a newer
/// or older daemon's answer still renders.
class J {
 public:
  J() = default;
  explicit J(simdjson::dom::element e) : e_(e), ok_(true) {}

  J operator[](std::string_view key) const {
    simdjson::dom::element v;
    if (!ok_ || e_.at_key(key).get(v)) return J();
    return J(v);
  }
  bool present() const { return ok_ && !e_.is_null(); }
  std::string str(std::string_view def = "") const {
    std::string_view v;
    if (!ok_ || e_.get(v)) return std::string(def);
    return std::string(v);
  }
  std::optional<double> num() const {
    if (!ok_) return std::nullopt;
    if (e_.is_double()) return e_.get_double().value();
    if (e_.is_int64()) return static_cast<double>(e_.get_int64().value());
    if (e_.is_uint64()) return static_cast<double>(e_.get_uint64().value());
    return std::nullopt;
  }
  double num(double def) const { return num().value_or(def); }
  std::uint64_t count() const {
    if (ok_ && e_.is_uint64()) return e_.get_uint64().value();
    return static_cast<std::uint64_t>(std::max(0.0, num(0)));
  }
  bool boolean(bool def = false) const {
    bool v;
    if (!ok_ || e_.get(v)) return def;
    return v;
  }
  std::vector<J> items() const {
    std::vector<J> out;
    simdjson::dom::array a;
    if (!ok_ || e_.get(a)) return out;
    for (auto v : a) out.emplace_back(v);
    return out;
  }
  std::vector<std::pair<std::string, J>> fields() const {
    std::vector<std::pair<std::string, J>> out;
    simdjson::dom::object o;
    if (!ok_ || e_.get(o)) return out;
    for (auto [k, v] : o) out.emplace_back(std::string(k), J(v));
    return out;
  }

 private:
  simdjson::dom::element e_;
  bool ok_ = false;
};

struct Doc {
  simdjson::dom::parser parser;
  J root;
  explicit Doc(std::string_view json) {
    simdjson::dom::element e;
    if (auto err = parser.parse(json.data(), json.size()).get(e))
      throw std::runtime_error(
          fmt::format("gatewayd's answer is not JSON: {}", simdjson::error_message(err)));
    if (!e.is_object()) throw std::runtime_error("gatewayd's answer is not a JSON object");
    root = J(e);
  }
};

std::string paint(const Style& st, const char* color, std::string_view text) {
  if (!st.color || !color) return std::string(text);
  return fmt::format("{}{}{}", color, text, kReset);
}

/// Cuts plain text (no escapes) to `width` columns with "...".
std::string cut(std::string_view text, size_t width) {
  if (visibleWidth(text) <= width) return std::string(text);
  return fitLine(text, width);
}

std::string rate(const J& v) {
  const auto r = v.num();
  if (!r) return "-";
  return *r >= 100 ? fmt::format("{:.0f}", *r) : fmt::format("{:.1f}", *r);
}

std::string ageOrDash(const J& v) {
  const auto s = v.num();
  return s ? formatAge(*s) : "-";
}

/// RFC 3339 with milliseconds → without them ("2026-11-21T10:15:30Z").
std::string shortTime(std::string t) {
  const auto dot = t.find('.');
  if (dot != std::string::npos && !t.empty() && t.back() == 'Z') t = t.substr(0, dot) + "Z";
  return t;
}

enum class Align { kLeft, kRight };
struct Column {
  std::string header;
  Align align = Align::kLeft;
  bool flex = false;  ///< shrinks (cells cut with "...") when the table is too wide
};
struct Cell {
  std::string text;
  const char* color = nullptr;
};

std::string table(const std::vector<Column>& cols, const std::vector<std::vector<Cell>>& rows,
                  const Style& st) {
  std::vector<size_t> w(cols.size());
  for (size_t i = 0; i < cols.size(); ++i) {
    w[i] = visibleWidth(cols[i].header);
    for (const auto& r : rows) w[i] = std::max(w[i], visibleWidth(r[i].text));
  }
  size_t total = 2 * (cols.size() - 1);
  for (size_t x : w) total += x;
  if (st.width > 0 && total > st.width) {
    for (size_t i = 0; i < cols.size() && total > st.width; ++i) {
      if (!cols[i].flex) continue;
      const size_t min = std::max<size_t>(visibleWidth(cols[i].header), 8);
      const size_t cut_by = std::min(total - st.width, w[i] > min ? w[i] - min : 0);
      w[i] -= cut_by;
      total -= cut_by;
    }
  }
  auto line = [&](const std::vector<Cell>& cells, bool header) {
    std::string out;
    for (size_t i = 0; i < cols.size(); ++i) {
      std::string text = cut(cells[i].text, w[i]);
      const size_t pad = w[i] - visibleWidth(text);
      const bool last = i + 1 == cols.size();
      std::string cell;
      if (cols[i].align == Align::kRight)
        cell = std::string(pad, ' ') + paint(st, cells[i].color, text);
      else
        cell = paint(st, cells[i].color, text) + (last ? "" : std::string(pad, ' '));
      if (header) cell = paint(st, kBold, cell);
      out += cell;
      if (!last) out += "  ";
    }
    return fitLine(out, st.width) + "\n";
  };
  std::vector<Cell> head;
  for (const auto& c : cols) head.push_back({c.header, nullptr});
  std::string out = line(head, true);
  for (const auto& r : rows) out += line(r, false);
  return out;
}

std::string textLine(const Style& st, std::string_view line) {
  return fitLine(line, st.width) + "\n";
}

/// `text` broken at spaces into lines of at most `width` columns (0: one line), later lines
/// indented by `indent` spaces, at most `max_lines` (the last one cut by textLine if need be).
/// A word longer than a line is cut where the line ends.
std::vector<std::string> wrapWords(std::string_view text, size_t width, size_t indent,
                                   size_t max_lines) {
  std::vector<std::string> lines;
  std::string line;
  const auto room = [&] { return width == 0 ? SIZE_MAX : width; };
  while (!text.empty() && lines.size() < max_lines) {
    if (lines.size() + 1 == max_lines) {  // the last line takes the rest
      line += text;
      break;
    }
    const size_t start = line.size();
    if (start + text.size() <= room()) {
      line += text;
      text = {};
      break;
    }
    const size_t fit = room() > start ? room() - start : 0;
    size_t cut = text.rfind(' ', fit);
    if (cut == std::string_view::npos || cut == 0) cut = std::max<size_t>(fit, 1);
    line += text.substr(0, cut);
    text.remove_prefix(cut);
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    lines.push_back(std::move(line));
    line.assign(indent, ' ');
  }
  if (line.find_first_not_of(' ') != std::string::npos) lines.push_back(std::move(line));
  return lines;
}

Cell upCell(bool up) { return up ? Cell{"up", kGreen} : Cell{"DOWN", kRed}; }

/// A sink's state: "up", "connecting" (not confirmed yet) or "DOWN"; older daemons send only
/// `up`.
Cell sinkStateCell(const J& sink) {
  const std::string state = sink["state"].str(sink["up"].boolean() ? "up" : "down");
  if (state == "up") return {"up", kGreen};
  if (state == "connecting") return {"connecting", kYellow};
  return {"DOWN", kRed};
}

/// Error text on one line: control characters become spaces.
std::string oneLine(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

}  // namespace

/// Length of the escape sequence starting at line[i] (ESC, or ESC [ params final-byte).
static size_t escapeLength(std::string_view line, size_t i) {
  size_t j = i + 1;
  if (j < line.size() && line[j] == '[') {
    ++j;
    while (j < line.size() && !(line[j] >= 0x40 && line[j] <= 0x7e)) ++j;
  }
  return std::min(j + 1, line.size()) - i;
}

size_t visibleWidth(std::string_view line) {
  size_t n = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c == 0x1b) {
      i += escapeLength(line, i) - 1;
      continue;
    }
    if ((c & 0xC0) != 0x80) ++n;  // not a UTF-8 continuation byte
  }
  return n;
}

std::string fitLine(std::string_view line, size_t width) {
  if (width == 0 || visibleWidth(line) <= width) return std::string(line);
  const size_t keep = width > 3 ? width - 3 : 0;
  std::string out;
  size_t n = 0;
  bool colored = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c == 0x1b) {
      const size_t len = escapeLength(line, i);
      const std::string_view esc = line.substr(i, len);
      out += esc;
      colored = esc != kReset;
      i += len - 1;
      continue;
    }
    if ((c & 0xC0) != 0x80) {
      if (n == keep) break;
      ++n;
    }
    out.push_back(static_cast<char>(c));
  }
  if (colored) out += kReset;
  out += std::string(std::min<size_t>(3, width), '.');
  return out;
}

std::string formatAge(double s) {
  if (s < 0) s = 0;
  if (s < 1) return fmt::format("{:.0f}ms", s * 1000);
  if (s < 60) return fmt::format("{:.0f}s", std::floor(s));
  const auto t = static_cast<std::uint64_t>(s);
  if (t < 3600) return fmt::format("{}m {:02}s", t / 60, t % 60);
  if (t < 86400) return fmt::format("{}h {:02}m", t / 3600, t % 3600 / 60);
  return fmt::format("{}d {:02}h", t / 86400, t % 86400 / 3600);
}

std::string formatMillis(double ms) {
  const double a = std::fabs(ms);
  if (a < 1000) return fmt::format("{:.1f} ms", ms);
  if (a < 60000) return fmt::format("{:.1f} s", ms / 1000);
  return (ms < 0 ? "-" : "") + formatAge(a / 1000);
}

std::string formatBytes(double b) {
  if (b < 1024) return fmt::format("{:.0f} B", b);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  int u = -1;
  while (b >= 1024 && u < 3) {
    b /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", b, units[u]);
}

std::string answerError(std::string_view json) {
  try {
    Doc d(json);
    return d.root["error"].str();
  } catch (const std::exception&) {
    return "";
  }
}

Rendered renderStatus(std::string_view json, const Style& st) {
  Doc d(json);
  const J& r = d.root;
  Rendered out;
  std::string& s = out.text;
  const J daemon = r["daemon"];
  std::string head =
      fmt::format("gatewayd {}, gateway {}", daemon["version"].str("?"), r["gateway"].str("?"));
  if (daemon["pid"].num()) head += fmt::format(", pid {}", daemon["pid"].count());
  if (daemon["uptime_s"].num()) head += ", up " + formatAge(daemon["uptime_s"].num(0));
  s += textLine(st, paint(st, kBold, head));
  if (daemon["config"].present()) s += textLine(st, "config    " + daemon["config"].str());
  const J reload = daemon["last_reload"];
  if (reload.present()) {
    if (reload["ok"].boolean(true))
      s += textLine(st, "reloaded  " + shortTime(reload["time"].str()));
    else {
      s += textLine(st, paint(st, kYellow,
                              fmt::format("reload    FAILED at {}, the old config runs:",
                                          shortTime(reload["time"].str()))));
      // The reason ends in what matters (`file:line: key: reason`): wrap it, up to 3 lines.
      const std::string why = oneLine(reload["error"].str());
      const size_t room = st.width > 4 ? st.width - 2 : 0;
      for (size_t at = 0, n = 0; at < why.size() && n < 3; at += room ? room : why.size(), ++n)
        s += textLine(st, paint(st, kYellow, "  " + why.substr(at, room ? room : why.size())));
    }
  }
  s += textLine(st, fmt::format("readings  in {}/s, {} since {}", rate(r["rate_in"]),
                                r["readings"].count(), shortTime(r["since"].str("?"))));
  const std::uint64_t bad_total = r["bad_total"].count();
  if (bad_total > 0) {
    std::string reasons;
    for (const auto& [reason, n] : r["bad"].fields())
      reasons += fmt::format("{}{} {}", reasons.empty() ? "" : ", ", reason, n.count());
    s += textLine(st, paint(st, kYellow, fmt::format("bad input {}: {}", bad_total, reasons)));
  } else {
    s += textLine(st, "bad input 0");
  }
  const J j = r["journal"];
  const std::uint64_t dropped = j["dropped"].count();
  s += textLine(st, fmt::format("journal   {} rows, {}, backlog {}, oldest unsent {}, dropped {}",
                                j["rows"].count(), formatBytes(j["file_bytes"].num(0)),
                                j["backlog"].count(), ageOrDash(j["oldest_unsent_age_s"]),
                                dropped > 0 ? paint(st, kRed, std::to_string(dropped)) : "0"));
  if (j["low_disk"].boolean())
    s += textLine(st, paint(st, kRed,
                            fmt::format("journal   disk below buffer.min_free ({} free): oldest "
                                        "unsent rows are dropped (gatewayctl buffer)",
                                        formatBytes(j["disk_free"].num(0)))));
  const J clock = r["clock"];
  if (clock.present() && clock["devices"].count() > 0) {
    std::string skew;
    for (const J& name : clock["out_of_bounds_devices"].items())
      skew += (skew.empty() ? ": " : ", ") + name.str();
    if (!skew.empty() &&
        clock["out_of_bounds"].count() > clock["out_of_bounds_devices"].items().size())
      skew += ", ...";
    if (!skew.empty()) skew += " (gatewayctl sensors)";
    for (const auto& l :
         wrapWords(fmt::format("clocks    {} devices, {} beyond clock.max_skew{}",
                               clock["devices"].count(), clock["out_of_bounds"].count(), skew),
                   st.width, 10, 3))
      s += textLine(st, l);
  }

  // The event loop's longest stall and the named handler that ran longest (issue 13).
  const J lim = r["limits"];
  if (lim["loop_stall_max_ms"].present()) {
    std::string loop = fmt::format("loop      longest stall {} (last 10-20 s), {} since start",
                                   formatMillis(lim["loop_stall_recent_ms"].num(0)),
                                   formatMillis(lim["loop_stall_max_ms"].num(0)));
    if (lim["loop_stall_cpu_max_ms"].present())
      loop += fmt::format(" (on the CPU: {} / {})",
                          formatMillis(lim["loop_stall_cpu_recent_ms"].num(0)),
                          formatMillis(lim["loop_stall_cpu_max_ms"].num(0)));
    if (lim["loop_stall_runq_max_ms"].present())
      loop += fmt::format(" (waiting for a CPU: {} / {})",
                          formatMillis(lim["loop_stall_runq_recent_ms"].num(0)),
                          formatMillis(lim["loop_stall_runq_max_ms"].num(0)));
    const J recent = lim["loop_work_recent"], longest = lim["loop_work_max"];
    if (!recent["name"].str().empty())
      loop += fmt::format("; longest work {} {}", recent["name"].str(),
                          formatMillis(recent["ms"].num(0)));
    if (!longest["name"].str().empty()) {
      loop += fmt::format(", since start {} {}", longest["name"].str(),
                          formatMillis(longest["ms"].num(0)));
      if (longest["cpu_ms"].present())
        loop += fmt::format(" ({} on the CPU)", formatMillis(longest["cpu_ms"].num(0)));
      if (!longest["detail"].str().empty()) loop += " (" + longest["detail"].str() + ")";
    }
    for (const auto& l : wrapWords(loop, st.width, 10, 3)) s += textLine(st, l);
  }

  std::vector<std::string> down, connecting, errors;
  std::vector<std::vector<Cell>> rows;
  for (const J& src : r["sources"].items()) {
    const bool up = src["up"].boolean();
    const std::string name = src["name"].str("?");
    rows.push_back({{name},
                    upCell(up),
                    {src["target"].str()},
                    {src["in_flight"].present() ? std::to_string(src["in_flight"].count()) : "-"}});
    if (!up) {
      down.push_back(name);
      if (!src["last_error"].str().empty())
        errors.push_back(fmt::format("  {}: {}", name, oneLine(src["last_error"].str())));
    }
  }
  s += "\n";
  s += table({{"SOURCE"}, {"STATE"}, {"TARGET", Align::kLeft, true}, {"IN FLIGHT", Align::kRight}},
             rows, st);
  rows.clear();
  for (const J& sink : r["sinks"].items()) {
    const bool up = sink["up"].boolean();
    const std::string name = sink["name"].str("?");
    const Cell state = sinkStateCell(sink);
    rows.push_back({{name},
                    state,
                    {sink["target"].str()},
                    {rate(sink["rate_out"])},
                    {std::to_string(sink["sent"].count())},
                    {std::to_string(sink["backlog"].count()), up ? nullptr : kYellow},
                    {ageOrDash(sink["oldest_unsent_age_s"])}});
    if (!up && state.text == "connecting") {
      connecting.push_back(name);
    } else if (!up) {
      down.push_back(name);
      errors.push_back(
          fmt::format("  {}: {}", name, oneLine(sink["last_error"].str("(no error reported)"))));
    }
  }
  s += "\n";
  if (rows.empty()) {
    s += textLine(st, paint(st, kYellow, "no sinks configured: readings stay in the journal"));
  } else {
    s += table({{"SINK"},
                {"STATE"},
                {"TARGET", Align::kLeft, true},
                {"OUT/S", Align::kRight},
                {"SENT", Align::kRight},
                {"BACKLOG", Align::kRight},
                {"OLDEST", Align::kRight}},
               rows, st);
  }
  for (const auto& e : errors)
    for (const auto& l : wrapWords(e, st.width, 4, 3)) s += textLine(st, paint(st, kRed, l));
  s += "\n";
  auto joined = [](const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  if (down.empty() && connecting.empty()) {
    s += textLine(st, paint(st, kGreen, "all sources and sinks up"));
  } else {
    if (!down.empty()) s += textLine(st, paint(st, kRed, "DOWN: " + joined(down)));
    if (!connecting.empty())
      s += textLine(st, paint(st, kYellow, "connecting, not confirmed yet: " + joined(connecting)));
    out.exit = kDegraded;
  }
  if (j["low_disk"].boolean()) out.exit = kDegraded;
  return out;
}

Rendered renderSensors(std::string_view json, const Style& st) {
  Doc d(json);
  const J& r = d.root;
  Rendered out;
  std::string& s = out.text;
  const J gw = r["gateway"];
  const auto devices = r["devices"].items();
  std::uint64_t flagged = 0;
  std::vector<std::vector<Cell>> rows;
  const double now_s = static_cast<double>(wallNow()) / kNanosPerSecond;
  for (const J& dev : devices) {
    const bool bad = dev["out_of_bounds"].boolean();
    flagged += bad;
    std::string seen = "-";
    if (auto t = parseRfc3339(dev["last_seen"].str()))
      seen = formatAge(now_s - static_cast<double>(*t) / kNanosPerSecond) + " ago";
    const double off_ms = dev["offset_ms"].num(0);
    std::string offset;
    if (std::fabs(off_ms) < 1000)
      offset = fmt::format("{:+.1f}ms", off_ms);
    else if (std::fabs(off_ms) < 60000)
      offset = fmt::format("{:+.2f}s", off_ms / 1000);
    else
      offset = (off_ms < 0 ? "-" : "+") + formatAge(std::fabs(off_ms) / 1000);
    std::string flag = bad ? "SKEW" : (dev["converged"].boolean(true) ? "ok" : "settling");
    const bool offline = !dev["online"].boolean(true);  // a Sparkplug death
    if (offline) flag = "OFFLINE";
    rows.push_back({{dev["device"].str("?")},
                    {seen},
                    {rate(dev["rate"])},
                    {std::to_string(dev["bad"].count()), dev["bad"].count() ? kYellow : nullptr},
                    {offset},
                    {fmt::format("{:+.1f}", dev["drift_ppm"].num(0))},
                    {std::to_string(dev["steps"].count())},
                    {dev["reference"].str("-")},
                    {flag, bad || offline ? kRed : (flag == "ok" ? kGreen : kYellow)}});
  }
  // gatewayd filters and limits the list (sensors PATTERN --limit N); older ones sent all.
  const auto orCount = [](const J& j, std::uint64_t def) { return j.present() ? j.count() : def; };
  const std::uint64_t total = orCount(r["total"], devices.size());
  const std::uint64_t matched = orCount(r["matched"], devices.size());
  flagged = orCount(r["out_of_bounds"], flagged);
  const double gw_off = gw["offset_ms"].num(0);
  s += textLine(st, fmt::format("{} devices, {} clocks beyond clock.max_skew; gateway clock "
                                "vs broker {}{}",
                                total, flagged, gw_off >= 0 ? "+" : "", formatMillis(gw_off)));
  s += "\n";
  if (matched > devices.size() || matched < total)
    s += textLine(st, fmt::format("showing {} of {} matching devices, most in need of attention "
                                  "first (PATTERN, --limit, --sort)",
                                  devices.size(), matched)) +
         "\n";
  if (rows.empty()) {
    s += textLine(st, "no device has sent a reading with a timestamp yet");
  } else {
    s += table({{"DEVICE", Align::kLeft, true},
                {"LAST SEEN", Align::kRight},
                {"MSG/S", Align::kRight},
                {"BAD", Align::kRight},
                {"OFFSET", Align::kRight},
                {"PPM", Align::kRight},
                {"STEPS", Align::kRight},
                {"REF"},
                {"CLOCK"}},
               rows, st);
    s += "\n";
    s += textLine(st,
                  "OFFSET = reference time - device time: + means the device's clock is "
                  "behind,");
    s += textLine(st, "- that it is ahead; a clock reset to 1970 shows as about +20000d.");
  }
  if (flagged) out.exit = kDegraded;
  return out;
}

Rendered renderBuffer(std::string_view json, const Style& st) {
  Doc d(json);
  const J j = d.root["journal"];
  Rendered out;
  std::string& s = out.text;
  const double used = j["used_bytes"].num(0), max = j["max_size"].num(0);
  s += textLine(st, "journal   " + j["path"].str("?"));
  s += textLine(
      st, fmt::format("size      {} on disk, {} in use of {} ({:.0f}%), max age {}",
                      formatBytes(j["file_bytes"].num(0)), formatBytes(used), formatBytes(max),
                      max > 0 ? 100 * used / max : 0.0, formatAge(j["max_age_s"].num(0))));
  const std::uint64_t failures = j["commit_failures"].count();
  s += textLine(
      st, fmt::format("rows      {} (last seq {}), {} pending; commits {}, {}", j["rows"].count(),
                      j["last_seq"].count(), j["pending"].count(), j["commits"].count(),
                      failures ? paint(st, kRed, fmt::format("{} FAILED", failures)) : "0 failed"));
  if (j["moved_aside"].present())
    s += textLine(
        st, paint(st, kYellow, "a corrupt journal was moved aside to " + j["moved_aside"].str()));
  const bool low_disk = j["low_disk"].boolean();
  if (j["min_free"].count() > 0)
    s += textLine(
        st, fmt::format("disk      {} free on its filesystem, buffer.min_free {}",
                        formatBytes(j["disk_free"].num(0)), formatBytes(j["min_free"].num(0))));
  if (low_disk) {
    for (const auto& l :
         wrapWords("free space on the journal's filesystem is below buffer.min_free: the journal "
                   "stopped growing and drops its oldest unsent rows to make room. Free space on "
                   "that filesystem (df -h), or lower buffer.min_free.",
                   st.width, 0, 4))
      s += textLine(st, paint(st, kRed, l));
    out.exit = kDegraded;
  }
  if (const std::uint64_t restores = j["restores"].count(); restores > 0)
    for (const auto& l : wrapWords(
             fmt::format("the journal file was deleted or moved away {} time{} while running and "
                         "written back each time; look for what removes files in its folder",
                         restores, restores == 1 ? "" : "s"),
             st.width, 0, 4))
      s += textLine(st, paint(st, kYellow, l));
  std::vector<std::vector<Cell>> rows;
  for (const J& sink : d.root["sinks"].items()) {
    const std::uint64_t dropped = sink["dropped"].count();
    rows.push_back({{sink["name"].str("?")},
                    {std::to_string(sink["cursor"].count())},
                    {std::to_string(sink["backlog"].count())},
                    {ageOrDash(sink["oldest_unsent_age_s"])},
                    {std::to_string(dropped), dropped ? kRed : nullptr}});
  }
  s += "\n";
  // Every reader of the journal with a cursor: the sinks and in-process consumers (windows).
  s += table({{"CONSUMER", Align::kLeft, true},
              {"CURSOR", Align::kRight},
              {"BACKLOG", Align::kRight},
              {"OLDEST UNSENT", Align::kRight},
              {"DROPPED", Align::kRight}},
             rows, st);
  if (const std::uint64_t dropped = j["dropped"].count(); dropped > 0) {
    // What happened, then what to do about it.
    s += textLine(st, paint(st, kRed,
                            fmt::format("{} unsent rows were dropped (buffer.max_size or "
                                        "buffer.max_age reached while a sink was behind).",
                                        dropped)));
    s += textLine(st,
                  "Bring the sink back (gatewayctl sinks), or raise buffer.max_size / "
                  "max_age to hold a longer outage.");
  }
  if (max > 0 && used >= 0.9 * max) {
    s += textLine(st, paint(st, kRed,
                            "the journal is at 90% of buffer.max_size: the oldest "
                            "unsent rows will be dropped"));
    out.exit = kDegraded;
  }
  if (failures) out.exit = kDegraded;
  return out;
}

Rendered renderSinks(std::string_view json, const Style& st) {
  Doc d(json);
  Rendered out;
  std::string& s = out.text;
  const auto sinks = d.root["sinks"].items();
  if (sinks.empty()) s += textLine(st, "no sinks configured: readings stay in the journal");
  bool first = true;
  for (const J& sink : sinks) {
    const bool up = sink["up"].boolean();
    if (!first) s += "\n";
    first = false;
    const Cell state = sinkStateCell(sink);
    s += textLine(st, fmt::format("{}  {}  {}", paint(st, kBold, sink["name"].str("?")),
                                  paint(st, state.color, state.text), sink["target"].str()));
    s += textLine(
        st, fmt::format("  sent {} ({}/s), retries {}, rejected {}", sink["sent"].count(),
                        rate(sink["rate_out"]), sink["retries"].count(), sink["rejected"].count()));
    s += textLine(st, fmt::format("  backlog {}, oldest unsent {}, dropped {}, cursor {}",
                                  sink["backlog"].count(), ageOrDash(sink["oldest_unsent_age_s"]),
                                  sink["dropped"].count(), sink["cursor"].count()));
    s += textLine(
        st, fmt::format("  delivery age p50 {}, p99 {}", formatMillis(sink["age_p50_ms"].num(0)),
                        formatMillis(sink["age_p99_ms"].num(0))));
    const std::string err = oneLine(sink["last_error"].str());
    if (err.empty()) {
      s += textLine(st, "  last error: -");
    } else {
      for (const auto& l : wrapWords("  last error: " + err, st.width, 4, 3))
        s += textLine(st, paint(st, up ? nullptr : kRed, l));
    }
    if (!up) out.exit = kDegraded;
  }
  return out;
}

namespace {

/// critical, error, warning, info, anything else: the order `alerts` lists them in.
int severityRank(const std::string& s) {
  if (s == "critical") return 0;
  if (s == "error") return 1;
  if (s == "warning") return 2;
  if (s == "info") return 3;
  return 4;
}

/// "line=3,cell=A" (template order), or empty.
std::string tagsText(const J& tags) {
  std::string out;
  for (const auto& [k, v] : tags.fields()) out += (out.empty() ? "" : ",") + k + "=" + v.str();
  return out;
}

/// An alert's value with what it is: "p95 91.2 > 85", "silent 1m 05s".
std::string labelledValue(const J& a) {
  const auto value = a["value"].num();
  const auto threshold = a["threshold"].num();
  if (!value) return "-";
  const std::string stat = a["statistic"].str("value");
  if (stat == "no_data") return "silent " + formatAge(*value);  // longer than no_data_for
  if (!threshold) return fmt::format("{} {:g}", stat, *value);
  return fmt::format("{} {:g} {} {:g}", stat, *value, *value > *threshold ? '>' : '<', *threshold);
}

/// How long ago an RFC 3339 time was: "5m 10s", or "-".
std::string sinceText(const std::string& t) {
  const auto at = parseRfc3339(t);
  if (!at) return "-";
  return formatAge(static_cast<double>(wallNow() - *at) / kNanosPerSecond);
}

/// When a rule fires and clears, in words: "fires when p95 > 85.5 for 30s, clears when p95 < 80";
/// "fires when no reading for 5m 00s".
std::string ruleCondition(const J& r) {
  const std::string on = r["on"].str("value");
  const auto for_s = r["for_s"].num();
  const std::string hold = for_s && *for_s > 0 ? " for " + formatAge(*for_s) : "";
  std::vector<std::string> parts;
  const auto threshold = [&](const char* key, const char* clear_key, char op, char clear_op) {
    const auto t = r[key].num();
    if (!t) return;
    parts.push_back(fmt::format("fires when {} {} {:g}{}, clears when {} {} {:g}", on, op, *t, hold,
                                on, clear_op, r[clear_key].num(*t)));
  };
  threshold("above", "clear_below", '>', '<');
  threshold("below", "clear_above", '<', '>');
  if (const auto silent = r["no_data_for_s"].num(); silent && *silent > 0)
    parts.push_back("fires when no reading for " + formatAge(*silent));
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out.empty() ? "no threshold" : out;
}

/// "pagerduty,webhook", or "kafka only" (rules without `notify` only go to the alerts topic).
std::string notifyText(const J& r) {
  std::string out;
  for (const J& n : r["notify"].items()) out += (out.empty() ? "" : ",") + n.str();
  return out.empty() ? "kafka only" : out;
}

}  // namespace

Rendered renderAlerts(std::string_view json, const Style& st) {
  Doc d(json);
  const J& r = d.root;
  Rendered out;
  std::string& s = out.text;
  const auto firing = r["firing"].items(), pending = r["pending"].items(),
             undelivered = r["undelivered"].items();
  s += textLine(st,
                fmt::format("{} rules; {} firing, {} pending, {} undelivered notifications",
                            r["rules"].count(), firing.size(), pending.size(), undelivered.size()));
  // Alerts grouped under their rule and severity (one line each group), so that a row is the
  // series: device, metric, tags, value and age fit 80 columns without cutting the metric
  // (issue 14: "beari..." under RULE and SEVERITY columns).
  auto alertTable = [&](std::vector<J> list, const char* color) {
    // Most severe first, then by rule, device, metric and tags: the same series stay together.
    std::stable_sort(list.begin(), list.end(), [](const J& x, const J& y) {
      const auto key = [](const J& a) {
        return std::make_tuple(severityRank(a["severity"].str()), a["rule"].str(),
                               a["device"].str(), a["metric"].str(), tagsText(a["tags"]));
      };
      return key(x) < key(y);
    });
    std::vector<std::vector<Cell>> rows;
    for (const J& a : list) {
      const std::string tags = tagsText(a["tags"]);
      rows.push_back({{"  " + a["device"].str("-")},
                      {a["metric"].str("-")},
                      {tags.empty() ? "-" : tags},
                      {labelledValue(a)},
                      {sinceText(a["time"].str())}});
    }
    const std::string t = table({{"  DEVICE", Align::kLeft, true},
                                 {"METRIC", Align::kLeft, true},
                                 {"TAGS", Align::kLeft, true},
                                 {"VALUE", Align::kLeft, true},
                                 {"SINCE"}},
                                rows, st);
    std::string text;
    size_t begin = 0;
    for (size_t i = 0; begin < t.size(); ++i) {  // line 0 is the header, line i alert i - 1
      const size_t end = t.find('\n', begin) + 1;
      if (i > 0) {
        const J& a = list[i - 1];
        const auto group = [](const J& x) {
          return std::make_pair(x["rule"].str("?"), x["severity"].str("-"));
        };
        if (i == 1 || group(a) != group(list[i - 2]))
          text += textLine(
              st, paint(st, color, a["rule"].str("?")) + " (" + a["severity"].str("-") + ")");
      }
      text.append(t, begin, end - begin);
      begin = end;
    }
    return text;
  };
  if (!firing.empty()) {
    s += "\n" + textLine(st, paint(st, kRed, "FIRING"));
    s += alertTable(firing, kRed);
  }
  if (!pending.empty()) {
    s += "\n" + textLine(st, paint(st, kYellow, "PENDING (condition true, waiting for `for`)"));
    s += alertTable(pending, kYellow);
  }
  if (!undelivered.empty()) {
    s += "\n" + textLine(st, paint(st, kRed, "UNDELIVERED NOTIFICATIONS"));
    std::vector<std::vector<Cell>> rows;
    for (const J& u : undelivered)
      rows.push_back({{u["state"].str() == "resolved" ? "resolve" : "trigger"},
                      {shortTime(u["time"].str("-"))},
                      {u["rule"].str("?")},
                      {u["device"].str("-")},
                      {u["notifier"].str("-")},
                      {std::to_string(u["attempts"].count()), nullptr},
                      {oneLine(u["last_error"].str("-"))}});
    s += table({{"EVENT"},
                {"TIME"},
                {"RULE", Align::kLeft, true},
                {"DEVICE", Align::kLeft, true},
                {"NOTIFIER"},
                {"TRIES", Align::kRight},
                {"LAST ERROR", Align::kLeft, true}},
               rows, st);
  }
  if (firing.empty() && pending.empty() && undelivered.empty())
    s += textLine(st,
                  paint(st, kGreen, "no alerts firing or pending, every notification delivered"));
  if (const auto rules = r["rule_list"].items(); !rules.empty()) {
    // A table of what each rule selects, each row followed by its condition on a line of its
    // own: thresholds are what the technician looks for, and they must not be cut at 80 columns.
    s += "\n" + textLine(st, paint(st, kBold, "RULES"));
    std::vector<std::vector<Cell>> rows;
    for (const J& rule : rules) {
      const std::string tags = tagsText(rule["tags"]);
      rows.push_back({{rule["name"].str("?")},
                      {rule["device"].str("*")},
                      {rule["metric"].str("*")},
                      {tags.empty() ? "-" : tags},
                      {rule["severity"].str("-")},
                      {notifyText(rule)}});
    }
    const std::string t = table({{"RULE"},
                                 {"DEVICE", Align::kLeft, true},
                                 {"METRIC", Align::kLeft, true},
                                 {"TAGS", Align::kLeft, true},
                                 {"SEVERITY"},
                                 {"NOTIFY", Align::kLeft, true}},
                                rows, st);
    size_t begin = 0;
    for (size_t i = 0; begin < t.size(); ++i) {  // line 0 is the header, line i rule i - 1
      const size_t end = t.find('\n', begin) + 1;
      s.append(t, begin, end - begin);
      begin = end;
      if (i == 0) continue;
      for (const auto& l : wrapWords("  " + ruleCondition(rules[i - 1]), st.width, 4, 3))
        s += textLine(st, l);
    }
  }
  if (!firing.empty() || !undelivered.empty()) out.exit = kDegraded;
  return out;
}

// `gatewayctl tail` (issue 14).
Rendered renderTail(std::string_view json, const Style& st, bool header) {
  Doc d(json);
  Rendered out;
  std::string& s = out.text;
  const auto readings = d.root["readings"].items();
  const std::string device = d.root["device"].str("?");
  if (readings.empty()) {
    if (header)
      s += textLine(st, fmt::format("no readings of {} in the journal (it keeps what the sinks "
                                    "have not sent, and the newest rows)",
                                    device));
    out.exit = kDegraded;
    return out;
  }
  // Times of the first reading's day are shown as hh:mm:ss.mmm; others in full.
  const std::string day = readings.front()["time"].str().substr(0, 11);
  auto when = [&](const std::string& t) {
    if (t.empty()) return std::string("-");
    return t.substr(0, 11) == day ? t.substr(11, 12) : t;
  };
  std::vector<std::vector<Cell>> rows;
  for (const J& r : readings) {
    std::string metric = r["metric"].str("?");
    if (const auto tags = r["tags"].fields(); !tags.empty()) {
      metric += '{';
      for (size_t i = 0; i < tags.size(); ++i)
        metric += (i ? "," : "") + tags[i].first + "=" + tags[i].second.str();
      metric += '}';
    }
    const J value = r["value"];
    rows.push_back({{when(r["time"].str())},
                    {metric},
                    {value.num() ? fmt::format("{}", *value.num()) : value.str("NaN")},
                    {when(r["device_time"].str())},
                    {r["reference"].str("-")},
                    {std::to_string(r["seq"].count())}});
  }
  const std::string t = table({{"EVENT TIME"},
                               {"METRIC", Align::kLeft, true},
                               {"VALUE", Align::kRight},
                               {"DEVICE TIME"},
                               {"REF"},
                               {"SEQ", Align::kRight}},
                              rows, st);
  if (header) {
    s += textLine(st, fmt::format("{}: {} latest readings, oldest first; times UTC {}", device,
                                  readings.size(), day.substr(0, 10)));
    s += t;
  } else {
    s += t.substr(t.find('\n') + 1);  // --follow: the same columns without the heads
  }
  return out;
}

// gatewayctl bad: counts, the devices with the most bad input, then the newest dead letters,
// each with its payload excerpt on a line of its own.
Rendered renderBad(std::string_view json, const Style& st) {
  Doc d(json);
  const J& r = d.root;
  Rendered out;
  std::string& s = out.text;
  const std::uint64_t total = r["total"].count();
  if (total == 0) {
    s += textLine(st, "no bad input since gatewayd started");
  } else {
    std::string reasons;
    for (const auto& [reason, n] : r["reasons"].fields())
      reasons += fmt::format("{}{} {}", reasons.empty() ? "" : ", ", reason, n.count());
    for (const auto& l :
         wrapWords(fmt::format("{} bad messages since gatewayd started: {}", total, reasons),
                   st.width, 2, 3))
      s += textLine(st, l);
    std::string devices;
    for (const J& dev : r["devices"].items())
      devices += fmt::format("{}{} {}", devices.empty() ? "" : ", ", dev["device"].str("?"),
                             dev["count"].count());
    const auto listed = r["devices"].items().size();
    const auto all = r["devices_total"].count();
    if (all > listed) devices += fmt::format(" and {} more", all - listed);
    if (r["other_devices"].count() > 0)
      devices +=
          fmt::format(" (+{} from devices past the count limit)", r["other_devices"].count());
    if (!devices.empty())
      for (const auto& l : wrapWords("by device: " + devices, st.width, 2, 3)) s += textLine(st, l);
    out.exit = kDegraded;
  }
  const auto letters = r["letters"].items();
  const J caps = r["caps"];
  if (letters.empty()) {
    if (total > 0) s += textLine(st, "no dead letter kept");
    return out;
  }
  s += textLine(
      st, fmt::format("newest {} dead letters (at most {} or {} are kept; -n for more):",
                      letters.size(), caps["rows"].count(), formatBytes(caps["bytes"].num(0))));
  // Times of the newest letter's day as hh:mm:ss.mmm; others in full.
  const std::string day = letters.front()["time"].str().substr(0, 11);
  std::vector<std::vector<Cell>> rows;
  for (const J& l : letters) {
    const std::string t = l["time"].str();
    rows.push_back({{t.substr(0, 11) == day ? t.substr(11, 12) : t},
                    {l["source"].str("?")},
                    {l["reason"].str("?"), kYellow},
                    {l["device"].str().empty() ? "-" : l["device"].str()},
                    {formatBytes(l["size"].num(0))},
                    {l["where"].str()}});
  }
  const std::string t = table({{"TIME (UTC)"},
                               {"SOURCE"},
                               {"REASON"},
                               {"DEVICE", Align::kLeft, true},
                               {"SIZE", Align::kRight},
                               {"TOPIC / PATH", Align::kLeft, true}},
                              rows, st);
  // The table's lines, each letter's excerpt under its row.
  size_t pos = t.find('\n') + 1;
  s += t.substr(0, pos);
  for (const J& l : letters) {
    const size_t end = t.find('\n', pos) + 1;
    s += t.substr(pos, end - pos);
    pos = end;
    s += textLine(st, "  payload: " + l["excerpt"].str());
  }
  return out;
}

// gatewayctl check: one line per broker, sink and notifier, then what each test found (the
// cause of a failure), in the same order.
Rendered renderCheck(std::string_view json, const Style& st) {
  Doc d(json);
  Rendered out;
  std::string& s = out.text;
  std::vector<std::vector<Cell>> rows;
  std::vector<std::string> failures;  // every result's detail, in order
  std::size_t ok = 0, failed = 0;
  for (const J& r : d.root["results"].items()) {
    const std::string state = r["state"].str("?");
    Cell cell{state, nullptr};
    if (state == "ok") {
      cell.color = kGreen;
      ++ok;
    } else if (state == "failed") {
      cell = {"FAILED", kRed};
      ++failed;
      failures.push_back(r["name"].str("?") + ": " + oneLine(r["detail"].str()));
    } else if (state == "running") {
      cell = {"no answer", kRed};
      ++failed;
      failures.push_back(r["name"].str("?") + ": no answer in time");
    }
    if (state == "ok") failures.push_back(r["name"].str("?") + ": " + oneLine(r["detail"].str()));
    rows.push_back({{r["name"].str("?")},
                    {r["kind"].str()},
                    cell,
                    {state == "ok" || state == "failed" ? formatMillis(r["ms"].num(0)) : "-"},
                    {r["target"].str(), nullptr}});
  }
  if (rows.empty()) {
    s += textLine(st, "nothing configured to test");
    return out;
  }
  s += table(
      {{"NAME"}, {"KIND"}, {"RESULT"}, {"TIME", Align::kRight}, {"TARGET", Align::kLeft, true}},
      rows, st);
  for (const auto& f : failures)
    for (const auto& l : wrapWords(f, st.width, 4, 4)) s += textLine(st, "  " + l);
  s += "\n";
  s += textLine(st, failed ? paint(st, kRed, fmt::format("{} of {} failed", failed, ok + failed))
                           : paint(st, kGreen, fmt::format("all {} ok", ok)));
  if (failed) out.exit = kDegraded;
  return out;
}

// gatewayctl top: one frame of the live view: the status (rates, sources, sinks, backlog,
// drops) and the alerts in short.
Rendered renderTop(std::string_view status_json, std::string_view alerts_json, const Style& st,
                   std::string_view clock) {
  Rendered out = renderStatus(status_json, st);
  Doc d(alerts_json);
  const J& r = d.root;
  const auto firing = r["firing"].items(), pending = r["pending"].items(),
             undelivered = r["undelivered"].items();
  std::string& s = out.text;
  s.insert(0, textLine(st, paint(st, kBold,
                                 fmt::format("gatewayctl top  {} UTC  (Ctrl-C to quit)", clock))));
  s += "\n";
  s += textLine(st, paint(st, firing.empty() && undelivered.empty() ? kGreen : kRed,
                          fmt::format("alerts    {} firing, {} pending, {} undelivered",
                                      firing.size(), pending.size(), undelivered.size())));
  constexpr std::size_t kShown = 5;
  for (std::size_t i = 0; i < firing.size() && i < kShown; ++i) {
    const J& a = firing[i];
    const auto value = a["value"].num();
    s += textLine(st, fmt::format("  {} {} {} {} = {}", a["severity"].str("-"), a["rule"].str("?"),
                                  a["device"].str("-"), a["metric"].str("-"),
                                  value ? fmt::format("{:g}", *value) : "-"));
  }
  if (firing.size() > kShown)
    s += textLine(st, fmt::format("  and {} more (gatewayctl alerts)", firing.size() - kShown));
  if (!firing.empty() || !undelivered.empty()) out.exit = kDegraded;
  return out;
}

}  // namespace gw::ctl
