// The one JSON writer for status (conventions: "Status is typed"): the control views gatewayctl
// reads, the `stats` and `sensors` log lines, and systemd's status line, all from a
// StatusSnapshot. Keys, value types and number formats are a contract with gatewayctl, the
// integration tests and scripts/demo.
#include <fmt/format.h>

#include <string>

#include "core/json.h"
#include "gateway/status.h"

namespace gw {
namespace {

/// Appends JSON to a string, placing the commas: begin/end for containers, key() before a
/// member's value.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  Writer& beginObject() { return open('{'); }
  Writer& endObject() { return close('}'); }
  Writer& beginArray() { return open('['); }
  Writer& endArray() { return close(']'); }
  /// An object whose first members are `object` (a complete JSON object from another writer);
  /// more members and endObject() follow.
  Writer& continueObject(std::string_view object) {
    comma();
    object.remove_suffix(1);  // its '}'
    out_ += object;
    need_comma_ = object.size() > 1;
    return *this;
  }
  Writer& key(std::string_view k) {
    comma();
    json::appendString(out_, k);
    out_ += ':';
    need_comma_ = false;
    return *this;
  }
  Writer& str(std::string_view v) {
    comma();
    json::appendString(out_, v);
    return done();
  }
  Writer& num(std::uint64_t v) { return raw(fmt::format("{}", v)); }
  Writer& num(std::int64_t v) { return raw(fmt::format("{}", v)); }
  Writer& boolean(bool v) { return raw(v ? "true" : "false"); }
  Writer& null() { return raw("null"); }
  /// A number with a fixed count of decimals (the views' precision for each figure).
  Writer& fixed(double v, int decimals) { return raw(fmt::format("{:.{}f}", v, decimals)); }
  Writer& fixed(std::optional<double> v, int decimals) { return v ? fixed(*v, decimals) : null(); }
  /// A finite number as written in the config (shortest form that reads back the same).
  Writer& number(double v) {
    comma();
    json::appendNumber(out_, v);
    return done();
  }
  /// RFC 3339 UTC with milliseconds, or null.
  Writer& time(std::optional<Nanos> t) {
    if (!t) return null();
    comma();
    out_ += '"';
    appendRfc3339Millis(out_, *t);
    out_ += '"';
    return done();
  }
  Writer& millis(Nanos v, int decimals) {
    return fixed(static_cast<double>(v) / kNanosPerMilli, decimals);
  }

 private:
  void comma() {
    if (need_comma_) out_ += ',';
  }
  Writer& done() {
    need_comma_ = true;
    return *this;
  }
  Writer& raw(std::string_view v) {
    comma();
    out_ += v;
    return done();
  }
  Writer& open(char c) {
    comma();
    out_ += c;
    need_comma_ = false;
    return *this;
  }
  Writer& close(char c) {
    out_ += c;
    return done();
  }

  std::string& out_;
  bool need_comma_ = false;
};

std::string notifierName(const std::string& forwarder_name) {
  return forwarder_name.substr(forwarder_name.find('.') + 1);  // "notify.<name>"
}

/// The members of one clock (inside an object).
void writeClock(Writer& w, const clock::DeviceClock& c) {
  w.key("offset_ms").millis(c.offset, 3);
  w.key("drift_ppm").fixed(c.drift_ppm, 2);
  w.key("samples").num(c.samples);
  w.key("steps").num(c.steps);
  w.key("last_step").time(c.last_step);
  w.key("converged").boolean(c.converged);
  w.key("out_of_bounds").boolean(c.out_of_bounds);
  w.key("last_seen").time(c.last_seen);
}

void writeOldestUnsent(Writer& w, std::optional<Nanos> oldest, Nanos wall) {
  w.key("oldest_unsent").time(oldest);
  w.key("oldest_unsent_age_s").fixed(ageSeconds(oldest, wall), 3);
}

void writeSinks(Writer& w, const StatusSnapshot& s) {
  w.beginArray();
  for (const auto& sink : s.sinks) {
    const auto& f = sink.forwarder;
    w.beginObject();
    w.key("name").str(f.name);
    w.key("target").str(sink.target);
    w.key("state").str(toString(f.state));
    w.key("up").boolean(f.up);
    w.key("sent").num(f.sent);
    w.key("retries").num(f.retries);
    w.key("rejected").num(f.rejected);
    w.key("cursor").num(sink.journal.cursor);
    w.key("backlog").num(sink.journal.backlog);
    w.key("dropped").num(sink.journal.dropped);
    w.key("age_p50_ms").fixed(f.age_p50_ms, 1);
    w.key("age_p99_ms").fixed(f.age_p99_ms, 1);
    writeOldestUnsent(w, sink.journal.oldest_unsent, s.wall);
    w.key("rate_out").fixed(sink.rate_out, 2);
    w.key("last_error").str(f.last_error);
    w.endObject();
  }
  w.endArray();
}

void writeJournal(Writer& w, const StatusSnapshot& s) {
  const JournalStatus& j = s.journal;
  w.beginObject();
  w.key("path").str(j.path);
  w.key("last_seq").num(j.stats.last_seq);
  w.key("rows").num(j.stats.rows);
  w.key("file_bytes").num(j.stats.file_bytes);
  w.key("used_bytes").num(j.stats.used_bytes);
  w.key("max_size").num(j.max_size);
  w.key("max_age_s").num(j.max_age_s);
  w.key("commits").num(j.stats.commits);
  w.key("commit_failures").num(j.commit_failures);
  w.key("pending").num(j.pending);
  w.key("backlog").num(j.backlog);
  w.key("dropped").num(j.dropped);
  writeOldestUnsent(w, j.oldest_unsent, s.wall);
  w.key("moved_aside");
  if (j.stats.moved_aside)
    w.str(j.stats.moved_aside->string());
  else
    w.null();
  w.key("restores").num(j.stats.restores);
  w.key("min_free").num(j.stats.min_free);
  w.key("disk_free").num(j.stats.disk_free);
  w.key("low_disk").boolean(j.stats.low_disk);
  w.endObject();
}

void writeDaemon(Writer& w, const DaemonStatus& d) {
  w.beginObject();
  w.key("version").str(d.version);
  w.key("pid").num(d.pid);
  w.key("started").time(d.started);
  w.key("uptime_s").fixed(static_cast<double>(d.now - d.started) / kNanosPerSecond, 3);
  w.key("config").str(d.config_file);
  w.key("reloads").num(d.reloads);
  w.key("reload_failures").num(d.reload_failures);
  w.key("metrics");
  if (d.metrics)
    w.str(*d.metrics);
  else
    w.null();
  w.key("last_reload");
  if (d.last_reload) {
    w.beginObject();
    w.key("time").time(d.last_reload->time);
    w.key("ok").boolean(d.last_reload->ok);
    w.key("error").str(d.last_reload->error);
    w.endObject();
  } else {
    w.null();
  }
  w.endObject();
}

void writeBad(Writer& w, const CounterStatus& c) {
  w.beginObject();
  for (const auto& [reason, n] : c.bad) w.key(reason).num(n);
  w.endObject();
}

void writeLimits(Writer& w, const LimitsStatus& l) {
  w.beginObject();
  w.key("max_series").num(l.max_series);
  w.key("series_idle_s").num(l.series_idle_s);
  w.key("readings_over_limit").num(l.readings_over_limit);
  w.key("clocks_evicted").num(l.clocks_evicted);
  w.key("loop_stall_max_ms").millis(l.loop_stall_max, 1);
  w.key("loop_stall_recent_ms").millis(l.loop_stall_recent, 1);
  w.key("loop_stall_cpu_max_ms").millis(l.loop_stall_cpu_max, 1);
  w.key("loop_stall_cpu_recent_ms").millis(l.loop_stall_cpu_recent, 1);
  w.key("loop_stall_runq_max_ms").millis(l.loop_stall_runq_max, 1);
  w.key("loop_stall_runq_recent_ms").millis(l.loop_stall_runq_recent, 1);
  // Which named handler held the loop longest (recent: last 10-20 s).
  w.key("loop_work_recent").beginObject();
  w.key("name").str(l.loop_work_recent.name);
  w.key("ms").millis(l.loop_work_recent.took, 1);
  w.endObject();
  w.key("loop_work_max").beginObject();
  w.key("name").str(l.loop_work_longest.name);
  w.key("ms").millis(l.loop_work_longest.took, 1);
  if (l.loop_work_longest.cpu >= 0) w.key("cpu_ms").millis(l.loop_work_longest.cpu, 1);
  w.key("detail").str(l.loop_work_longest.detail);
  w.endObject();
  w.endObject();
}

void writeStatus(Writer& w, const StatusSnapshot& s) {
  w.beginObject();
  if (s.daemon) writeDaemon(w.key("daemon"), *s.daemon);
  w.key("gateway").str(s.gateway_id);
  w.key("since").time(s.since);
  w.key("messages").num(s.counters.messages);
  w.key("readings").num(s.counters.readings);
  w.key("rate_in").fixed(s.counters.rate_in, 2);
  w.key("bad_total").num(s.counters.badTotal());
  writeBad(w.key("bad"), s.counters);
  w.key("sources").beginArray();
  for (const auto& src : s.sources) {
    w.beginObject();
    w.key("name").str(src.name);
    w.key("target").str(src.target);
    w.key("up").boolean(src.up);
    for (const auto& f : src.figures) {
      if (f.kind == Figure::Kind::kFlag)
        w.key(f.key).boolean(f.value != 0);
      else
        w.key(f.key).num(f.value);
    }
    w.key("last_error").str(src.last_error);
    w.key("last_error_time")
        .time(src.last_error_time ? std::optional<Nanos>(src.last_error_time) : std::nullopt);
    w.endObject();
  }
  w.endArray();
  writeSinks(w.key("sinks"), s);
  writeJournal(w.key("journal"), s);
  w.key("clock").beginObject();
  w.key("devices").num(s.clock.devices);
  w.key("out_of_bounds").num(s.clock.out_of_bounds);
  w.key("out_of_bounds_devices").beginArray();
  for (const auto& name : s.clock.out_of_bounds_names) w.str(name);
  w.endArray();
  w.key("gateway_offset_ms").millis(s.clock.gateway.offset, 3);
  w.endObject();
  writeLimits(w.key("limits"), s.limits);
  w.endObject();
}

void writeSensors(Writer& w, const StatusSnapshot& s) {
  w.beginObject();
  w.key("gateway").beginObject();
  writeClock(w, s.clock.gateway);
  w.endObject();
  w.key("max_skew_ms").millis(s.clock.max_skew, 3);
  w.key("total").num(s.clock.devices);
  w.key("out_of_bounds").num(s.clock.out_of_bounds);
  w.key("matched").num(s.clock.matched);  // by the pattern; "devices" lists up to --limit
  w.key("devices").beginArray();
  for (const auto& d : s.clock.per_device) {
    w.beginObject();
    w.key("device").str(d.device);
    w.key("reference").str(toString(d.clock.reference));
    writeClock(w, d.clock);
    w.key("rate").fixed(d.rate, 2);
    if (d.online) w.key("online").boolean(*d.online);
    w.key("bad").num(d.bad);
    w.endObject();
  }
  w.endArray();
  w.endObject();
}

void writeBuffer(Writer& w, const StatusSnapshot& s) {
  w.beginObject();
  writeJournal(w.key("journal"), s);
  w.key("sinks").beginArray();
  for (const auto& [name, b] : s.journal.stats.sinks) {
    w.beginObject();
    w.key("name").str(name);
    w.key("cursor").num(b.cursor);
    w.key("backlog").num(b.backlog);
    w.key("dropped").num(b.dropped);
    writeOldestUnsent(w, b.oldest_unsent, s.wall);
    w.endObject();
  }
  w.endArray();
  w.endObject();
}

/// The configured `[[alert]]` rules as the operator wrote them, with the effective clear
/// thresholds; durations in seconds. Keys of options a rule does not use are left out.
void writeRules(Writer& w, const std::vector<alerts::Rule>& rules) {
  w.beginArray();
  for (const alerts::Rule& r : rules) {
    w.beginObject();
    w.key("name").str(r.name);
    w.key("device").str(r.device);
    w.key("metric").str(r.metric);
    w.key("tags").beginObject();
    for (const auto& t : r.tags) w.key(t.key).str(t.pattern);
    w.endObject();
    w.key("on").str(r.on);
    if (r.above) {
      w.key("above").number(*r.above);
      w.key("clear_below").number(r.clear_below.value_or(*r.above));
    }
    if (r.below) {
      w.key("below").number(*r.below);
      w.key("clear_above").number(r.clear_above.value_or(*r.below));
    }
    if (r.for_duration > 0)
      w.key("for_s").number(static_cast<double>(r.for_duration) / kNanosPerSecond);
    if (r.no_data_for > 0)
      w.key("no_data_for_s").number(static_cast<double>(r.no_data_for) / kNanosPerSecond);
    w.key("severity").str(r.severity);
    w.key("notify").beginArray();
    for (const auto& n : r.notify) w.str(n);
    w.endArray();
    w.endObject();
  }
  w.endArray();
}

/// `gatewayctl alerts`: firing alerts (as alert records: "time" is when it fired), the
/// undelivered outbox with each entry's delivery state, and each notifier. Pending states are
/// only counted (the engine keeps no list of them).
void writeAlerts(Writer& w, const StatusSnapshot& s) {
  const AlertStatus& a = s.alerts;
  w.beginObject();
  w.key("rules").num(a.rules);
  writeRules(w.key("rule_list"), a.rule_list);
  w.key("firing").beginArray();
  std::string record;
  for (const auto& e : a.firing) {
    record.clear();
    alerts::appendAlertJson(record, e);
    w.continueObject(record).endObject();
  }
  w.endArray();
  w.key("pending").beginArray().endArray();
  w.key("pending_count").num(a.counters.pending);
  w.key("undelivered").beginArray();
  for (const auto& u : a.undelivered) {
    record.clear();
    alerts::appendAlertJson(record, u.event);
    w.continueObject(record);
    w.key("notifier").str(u.notifier);
    w.key("attempts").num(u.attempts);
    w.key("last_error").str(u.last_error);
    w.endObject();
  }
  w.endArray();
  w.key("notifiers").beginArray();
  for (const auto& n : a.notifiers) {
    w.beginObject();
    w.key("name").str(notifierName(n.name));
    w.key("up").boolean(n.up);
    w.key("delivered").num(n.sent);
    w.key("rejected").num(n.rejected);
    w.key("retries").num(n.retries);
    w.key("last_error").str(n.last_error);
    w.endObject();
  }
  w.endArray();
  w.key("firing_total").num(a.counters.firing);  // "firing" lists at most 1,000
  w.endObject();
}

}  // namespace

std::optional<StatusView> parseStatusView(std::string_view command) {
  if (command == "status") return StatusView::kStatus;
  if (command == "sensors") return StatusView::kSensors;
  if (command == "buffer") return StatusView::kBuffer;
  if (command == "sinks") return StatusView::kSinks;
  if (command == "alerts") return StatusView::kAlerts;
  return std::nullopt;
}

StatusParts partsOf(StatusView view) {
  using namespace status_part;
  switch (view) {
    case StatusView::kStatus:
      return kCounters | kSources | kSinks | kJournal | kClocks;
    case StatusView::kSensors:
      return kClocks | kDevices;
    case StatusView::kBuffer:
      return kJournal;
    case StatusView::kSinks:
      return kSinks;
    case StatusView::kAlerts:
      return kAlerts | kUndelivered;
  }
  return 0;
}

std::string statusJson(StatusView view, const StatusSnapshot& s) {
  std::string out;
  Writer w(out);
  switch (view) {
    case StatusView::kStatus:
      writeStatus(w, s);
      break;
    case StatusView::kSensors:
      writeSensors(w, s);
      break;
    case StatusView::kBuffer:
      writeBuffer(w, s);
      break;
    case StatusView::kSinks:
      writeSinks(w.beginObject().key("sinks"), s);
      w.endObject();
      break;
    case StatusView::kAlerts:
      writeAlerts(w, s);
      break;
  }
  return out;
}

std::string unknownCommandJson(std::string_view command) {
  std::string out;
  Writer w(out);
  w.beginObject().key("error").str(fmt::format("unknown command '{}'", command.substr(0, 64)));
  w.endObject();
  return out;
}

std::string requestErrorJson(std::string_view message) {
  std::string out;
  Writer w(out);
  w.beginObject().key("error").str(message.substr(0, 200));
  w.endObject();
  return out;
}

std::string statsJson(const StatusSnapshot& s) {
  std::string out;
  Writer w(out);
  w.beginObject();
  w.key("messages").num(s.counters.messages);
  w.key("readings").num(s.counters.readings);
  writeBad(w.key("bad"), s.counters);
  const JournalStatus& j = s.journal;
  w.key("journal").beginObject();
  w.key("last_seq").num(j.stats.last_seq);
  w.key("rows").num(j.stats.rows);
  w.key("bytes").num(j.stats.file_bytes);
  w.key("commits").num(j.stats.commits);
  w.key("commit_failures").num(j.commit_failures);
  w.endObject();
  if (s.windows) {
    const auto& ws = s.windows->stats;
    w.key("windows").beginObject();
    w.key("open").num(ws.open_windows);
    w.key("closed").num(ws.windows_closed);
    w.key("late").num(ws.late);
    w.key("series").num(ws.series);
    w.key("sketch_windows").num(ws.sketch_windows);
    w.key("memory_bytes").num(s.windows->memory_bytes);
    w.key("aggregates").num(s.windows->aggregates);
    w.endObject();
  }
  const AlertStatus& a = s.alerts;
  if (a.engine) {
    w.key("alerts").beginObject();
    w.key("events").num(a.events);
    w.key("triggers").num(a.counters.triggers);
    w.key("resolves").num(a.counters.resolves);
    w.key("firing").num(a.counters.firing);
    w.key("pending").num(a.counters.pending);
    w.key("held").num(a.counters.held);
    w.key("suppressed").num(a.counters.suppressed);
    w.key("delayed").num(a.counters.delayed);
    w.endObject();
  }
  if (!a.notifiers.empty()) {
    w.key("notifiers").beginObject();
    for (const auto& n : a.notifiers) {
      w.key(n.name).beginObject();
      w.key("up").boolean(n.up);
      w.key("delivered").num(n.sent);
      w.key("retries").num(n.retries);
      w.key("rejected").num(n.rejected);
      w.key("last_error").str(n.last_error);
      w.endObject();
    }
    w.endObject();
  }
  w.key("clock").beginObject();
  w.key("devices").num(s.clock.devices);
  w.key("out_of_bounds").num(s.clock.out_of_bounds);
  w.key("steps").num(s.clock.steps);
  w.key("gateway_offset_ms").millis(s.clock.gateway.offset, 3);
  w.endObject();
  writeLimits(w.key("limits"), s.limits);
  for (const auto& src : s.sources) {  // each source's figures under its name
    w.key(src.name).beginObject();
    w.key("up").boolean(src.up);
    for (const auto& f : src.figures) w.key(f.key).num(f.value);
    w.endObject();
  }
  w.key("sinks").beginObject();
  for (const auto& sink : s.sinks) {
    const auto& f = sink.forwarder;
    w.key(f.name).beginObject();
    w.key("state").str(toString(f.state));
    w.key("up").boolean(f.up);
    w.key("sent").num(f.sent);
    w.key("backlog").num(sink.journal.backlog);
    w.key("retries").num(f.retries);
    w.key("rejected").num(f.rejected);
    w.key("dropped").num(sink.journal.dropped);
    w.key("age_p50_ms").fixed(f.age_p50_ms, 1);
    w.key("age_p99_ms").fixed(f.age_p99_ms, 1);
    w.key("last_error").str(f.last_error);
    w.endObject();
  }
  w.endObject();
  w.endObject();
  return out;
}

std::string sensorsLogJson(const StatusSnapshot& s) {
  std::string out;
  Writer w(out);
  w.beginObject();
  w.key("gateway").beginObject();
  writeClock(w, s.clock.gateway);
  w.endObject();
  w.key("devices").beginArray();
  for (const auto& d : s.clock.per_device) {
    w.beginObject();
    w.key("device").str(d.device);
    w.key("reference").str(toString(d.clock.reference));
    writeClock(w, d.clock);
    w.endObject();
  }
  w.endArray();
  w.endObject();
  return out;
}

std::string statusLine(const StatusSnapshot& s) {
  std::string out;
  for (const auto& src : s.sources)
    out += fmt::format("{} {}, ", src.name, src.up ? "connected" : "disconnected");
  out += fmt::format("{} readings", s.counters.readings);
  for (const auto& sink : s.sinks)
    out += fmt::format(", {} {} backlog {}", sink.forwarder.name, toString(sink.forwarder.state),
                       sink.journal.backlog);
  return out;
}

}  // namespace gw
