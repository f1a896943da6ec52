// The views of the engine: the `stats` log line, systemd's STATUS=, and the control socket's
// JSON documents (gatewayctl, the metrics endpoint).
#include <fmt/format.h>

#include <algorithm>

#include "alerts/alert_event.h"
#include "core/json.h"
#include "gateway/pipeline_impl.h"

namespace gw {
namespace {

void appendClock(std::string& s, const clock::DeviceClock& c) {
  s += fmt::format(R"("offset_ms":{:.3f},"drift_ppm":{:.2f},"samples":{},"steps":{},"last_step":)",
                   static_cast<double>(c.offset) / kNanosPerMilli, c.drift_ppm, c.samples, c.steps);
  if (c.last_step) {
    s += '"';
    appendRfc3339Millis(s, *c.last_step);
    s += '"';
  } else {
    s += "null";
  }
  s += fmt::format(R"(,"converged":{},"out_of_bounds":{},"last_seen":")", c.converged,
                   c.out_of_bounds);
  appendRfc3339Millis(s, c.last_seen);
  s += '"';
}

void appendRate(std::string& s, const Pipeline::Impl::ControlSnapshot* base, Nanos now,
                std::uint64_t current, std::uint64_t before) {
  if (!base || current < before) {
    s += "null";
    return;
  }
  const double seconds = static_cast<double>(now - base->mono) / kNanosPerSecond;
  s += fmt::format("{:.2f}", static_cast<double>(current - before) / seconds);
}

void appendTimeOrNull(std::string& s, std::optional<Nanos> t) {
  if (!t) {
    s += "null";
    return;
  }
  s += '"';
  appendRfc3339Millis(s, *t);
  s += '"';
}

/// `"oldest_unsent":<time|null>,"oldest_unsent_age_s":<seconds|null>`.
void appendOldestUnsent(std::string& s, std::optional<Nanos> oldest, Nanos wall) {
  s += R"("oldest_unsent":)";
  appendTimeOrNull(s, oldest);
  s += R"(,"oldest_unsent_age_s":)";
  if (oldest)
    s += fmt::format("{:.3f}",
                     static_cast<double>(std::max<Nanos>(0, wall - *oldest)) / kNanosPerSecond);
  else
    s += "null";
}

}  // namespace

std::uint64_t Pipeline::Impl::messageCount() const {
  std::uint64_t n = 0;
  for (const auto& source : sources) n += source->status().figure("messages");
  return n;
}

std::string Pipeline::Impl::statsJson() const {
  std::string s =
      fmt::format(R"({{"messages":{},"readings":{},"bad":{{)", messageCount(), readings);
  bool first = true;
  for (const auto& [reason, n] : bad_counts) {
    s += first ? "" : ",";
    first = false;
    json::appendString(s, reason);
    s += fmt::format(":{}", n);
  }
  const auto js = journal->stats();
  s += fmt::format(
      R"(}},"journal":{{"last_seq":{},"rows":{},"bytes":{},"commits":{},"commit_failures":{}}},)",
      js.last_seq, js.rows, js.file_bytes, js.commits, commit_failures);
  if (windows) {
    const auto ws = windows->stats();
    s += fmt::format(
        R"("windows":{{"open":{},"closed":{},"late":{},"series":{},"sketch_windows":{},"memory_bytes":{},"aggregates":{}}},)",
        ws.open_windows, ws.windows_closed, ws.late, ws.series, ws.sketch_windows,
        windows->memoryBytes(), aggregates);
  }
  if (alert_engine) {
    const auto c = alert_engine->counters();
    s += fmt::format(
        R"("alerts":{{"events":{},"triggers":{},"resolves":{},"firing":{},"pending":{},"held":{},"suppressed":{},"delayed":{}}},)",
        alert_count, c.triggers, c.resolves, c.firing, c.pending, c.held, c.suppressed, c.delayed);
  }
  if (!outboxes.empty()) {
    s += R"("notifiers":{)";
    bool first_n = true;
    for (const auto& f : outboxes) {
      const auto st = f->status();
      s += first_n ? "" : ",";
      first_n = false;
      json::appendString(s, st.name);
      s += fmt::format(R"(:{{"up":{},"delivered":{},"retries":{},"rejected":{},"last_error":)",
                       st.up, st.sent, st.retries, st.rejected);
      json::appendString(s, st.last_error);
      s += "}";
    }
    s += "},";
  }
  std::uint64_t flagged = 0, steps = 0;
  for (const auto& [device, estimator] : clocks) {
    flagged += estimator.state().out_of_bounds;
    steps += estimator.state().steps;
  }
  s += fmt::format(
      R"("clock":{{"devices":{},"out_of_bounds":{},"steps":{},"gateway_offset_ms":{:.3f}}},)",
      clocks.size(), flagged, steps,
      static_cast<double>(gateway_clock.state().offset) / kNanosPerMilli);
  for (const auto& source : sources) {  // each source's figures under its name
    const auto st = source->status();
    json::appendString(s, st.name);
    s += fmt::format(R"(:{{"up":{})", st.up);
    for (const auto& f : st.figures) s += fmt::format(R"(,"{}":{})", f.key, f.value);
    s += "},";
  }
  s += R"("sinks":{)";
  first = true;
  for (const auto& f : forwarders) {
    const auto st = f->status();
    const auto it = js.sinks.find(st.name);
    const std::uint64_t backlog = it != js.sinks.end() ? it->second.backlog : 0;
    const std::uint64_t dropped = it != js.sinks.end() ? it->second.dropped : 0;
    s += first ? "" : ",";
    first = false;
    json::appendString(s, st.name);
    s += fmt::format(
        R"(:{{"up":{},"sent":{},"backlog":{},"retries":{},"rejected":{},"dropped":{},"age_p50_ms":{:.1f},"age_p99_ms":{:.1f},"last_error":)",
        st.up, st.sent, backlog, st.retries, st.rejected, dropped, st.age_p50_ms, st.age_p99_ms);
    json::appendString(s, st.last_error);
    s += "}";
  }
  s += "}}";
  return s;
}

std::string Pipeline::Impl::statusLine() const {
  std::string s;
  for (const auto& source : sources) {
    const auto st = source->status();
    s += fmt::format("{} {}, ", st.name, st.up ? "connected" : "disconnected");
  }
  s += fmt::format("{} readings", readings);
  const auto js = journal->stats();
  for (const auto& f : forwarders) {
    const auto st = f->status();
    const auto it = js.sinks.find(st.name);
    s += fmt::format(", {} {} backlog {}", st.name, st.up ? "up" : "down",
                     it != js.sinks.end() ? it->second.backlog : 0);
  }
  return s;
}

std::string Pipeline::Impl::sensorsJson() const {
  std::string s = R"({"gateway":{)";
  appendClock(s, gateway_clock.state());
  s += R"(},"devices":[)";
  bool first = true;
  for (const auto& [device, estimator] : clocks) {
    s += first ? "{" : ",{";
    first = false;
    s += R"("device":)";
    json::appendString(s, device);
    s += R"(,"reference":")";
    s += toString(estimator.state().reference);
    s += "\",";
    appendClock(s, estimator.state());
    s += '}';
  }
  s += "]}";
  return s;
}

void Pipeline::Impl::controlSample(Nanos now) const {
  if (!control_snapshots.empty() && now - control_snapshots.back().mono < kNanosPerSecond) return;
  ControlSnapshot snap;
  snap.mono = now;
  snap.readings = readings;
  for (const auto& f : forwarders) snap.sent[f->name()] = f->status().sent;
  for (const auto& [device, estimator] : clocks)
    snap.device_samples[device] = estimator.state().samples;
  control_snapshots.push_back(std::move(snap));
  while (now - control_snapshots.front().mono > 30 * kNanosPerSecond)
    control_snapshots.erase(control_snapshots.begin());
}

/// The snapshot to measure rates against: the oldest of the last 15 s that is at least 1 s
/// old, or nullptr.
const Pipeline::Impl::ControlSnapshot* Pipeline::Impl::controlBase(Nanos now) const {
  for (const auto& snap : control_snapshots)
    if (now - snap.mono <= 15 * kNanosPerSecond && now - snap.mono >= kNanosPerSecond) return &snap;
  return nullptr;
}

std::string Pipeline::Impl::controlSinkTarget(std::string_view name) const {
  const auto it = sink_targets.find(name);
  return it == sink_targets.end() ? std::string() : it->second;
}

void Pipeline::Impl::appendControlSinks(std::string& s, const buffer::JournalStats& js, Nanos wall,
                                        Nanos mono, const ControlSnapshot* base) const {
  s += '[';
  bool first = true;
  for (const auto& f : forwarders) {
    const auto st = f->status();
    const auto it = js.sinks.find(st.name);
    const buffer::SinkBacklog b = it != js.sinks.end() ? it->second : buffer::SinkBacklog{};
    s += first ? "{" : ",{";
    first = false;
    s += R"("name":)";
    json::appendString(s, st.name);
    s += R"(,"target":)";
    json::appendString(s, controlSinkTarget(st.name));
    s += fmt::format(
        R"(,"up":{},"sent":{},"retries":{},"rejected":{},"cursor":{},"backlog":{},"dropped":{},)"
        R"("age_p50_ms":{:.1f},"age_p99_ms":{:.1f},)",
        st.up, st.sent, st.retries, st.rejected, b.cursor, b.backlog, b.dropped, st.age_p50_ms,
        st.age_p99_ms);
    appendOldestUnsent(s, b.oldest_unsent, wall);
    s += R"(,"rate_out":)";
    std::uint64_t before = 0;
    if (base) {
      const auto sit = base->sent.find(st.name);
      if (sit != base->sent.end()) before = sit->second;
    }
    appendRate(s, base && base->sent.count(st.name) ? base : nullptr, mono, st.sent, before);
    s += R"(,"last_error":)";
    json::appendString(s, st.last_error);
    s += '}';
  }
  s += ']';
}

void Pipeline::Impl::appendControlJournal(std::string& s, const buffer::JournalStats& js,
                                          Nanos wall) const {
  // Backlog, drops and age over the uplinks (forwarders), not over in-process consumers of
  // the journal such as the windows.
  std::uint64_t backlog = 0, dropped = 0;
  std::optional<Nanos> oldest;
  for (const auto& [name, b] : js.sinks) {
    if (std::none_of(forwarders.begin(), forwarders.end(),
                     [&, &name = name](const auto& f) { return f->name() == name; }))
      continue;
    backlog = std::max(backlog, b.backlog);
    dropped += b.dropped;
    if (b.oldest_unsent && (!oldest || *b.oldest_unsent < *oldest)) oldest = b.oldest_unsent;
  }
  s += R"({"path":)";
  json::appendString(s, (cfg.gateway.state_dir / "journal.db").string());
  s += fmt::format(R"(,"last_seq":{},"rows":{},"file_bytes":{},"used_bytes":{},"max_size":{},)"
                   R"("max_age_s":{},"commits":{},"commit_failures":{},"pending":{},"backlog":{},)"
                   R"("dropped":{},)",
                   js.last_seq, js.rows, js.file_bytes, js.used_bytes, cfg.buffer.max_size,
                   cfg.buffer.max_age / kNanosPerSecond, js.commits, commit_failures,
                   journal->pending(), backlog, dropped);
  appendOldestUnsent(s, oldest, wall);
  s += R"(,"moved_aside":)";
  if (js.moved_aside)
    json::appendString(s, js.moved_aside->string());
  else
    s += "null";
  s += '}';
}

std::string Pipeline::Impl::controlStatus() const {
  const Nanos wall = time.wall(), mono = time.mono();
  const ControlSnapshot* base = controlBase(mono);
  std::string s = R"({"gateway":)";
  json::appendString(s, cfg.gateway.id);
  s += R"(,"since":)";
  appendTimeOrNull(s, control_since);
  std::uint64_t bad_total = 0;
  for (const auto& [reason, n] : bad_counts) bad_total += n;
  s += fmt::format(R"(,"messages":{},"readings":{},"rate_in":)", messageCount(), readings);
  appendRate(s, base, mono, readings, base ? base->readings : 0);
  s += fmt::format(R"(,"bad_total":{},"bad":{{)", bad_total);
  bool first = true;
  for (const auto& [reason, n] : bad_counts) {
    s += first ? "" : ",";
    first = false;
    json::appendString(s, reason);
    s += fmt::format(":{}", n);
  }
  s += R"(},"sources":[)";
  bool first_source = true;
  for (const auto& source : sources) {
    const auto st = source->status();
    s += first_source ? "{" : ",{";
    first_source = false;
    s += R"("name":)";
    json::appendString(s, st.name);
    s += R"(,"target":)";
    json::appendString(s, st.target);
    s += fmt::format(R"(,"up":{})", st.up);
    for (const auto& f : st.figures) {
      if (f.kind == Figure::Kind::kFlag)
        s += fmt::format(R"(,"{}":{})", f.key, f.value != 0);
      else
        s += fmt::format(R"(,"{}":{})", f.key, f.value);
    }
    s += R"(,"last_error":)";
    json::appendString(s, st.last_error);
    s += R"(,"last_error_time":)";
    appendTimeOrNull(s,
                     st.last_error_time ? std::optional<Nanos>(st.last_error_time) : std::nullopt);
    s += '}';
  }
  s += R"(],"sinks":)";
  const auto js = journal->stats();
  appendControlSinks(s, js, wall, mono, base);
  s += R"(,"journal":)";
  appendControlJournal(s, js, wall);
  std::uint64_t flagged = 0;
  for (const auto& [device, estimator] : clocks) flagged += estimator.state().out_of_bounds;
  s += fmt::format(R"(,"clock":{{"devices":{},"out_of_bounds":{},"gateway_offset_ms":{:.3f}}}}})",
                   clocks.size(), flagged,
                   static_cast<double>(gateway_clock.state().offset) / kNanosPerMilli);
  return s;
}

std::string Pipeline::Impl::controlSensors() const {
  const Nanos mono = time.mono();
  std::string s = R"({"gateway":{)";
  appendClock(s, gateway_clock.state());
  s += fmt::format(R"(}},"max_skew_ms":{:.3f},"devices":[)",
                   static_cast<double>(cfg.clock.max_skew) / kNanosPerMilli);
  // Sorted by device name: a stable table for people and diffs.
  std::vector<const std::string*> names;
  names.reserve(clocks.size());
  for (const auto& [device, estimator] : clocks) names.push_back(&device);
  std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
  bool first = true;
  for (const std::string* device : names) {
    const auto& c = clocks.find(*device)->second.state();
    s += first ? "{" : ",{";
    first = false;
    s += R"("device":)";
    json::appendString(s, *device);
    s += R"(,"reference":")";
    s += toString(c.reference);
    s += "\",";
    appendClock(s, c);
    s += R"(,"rate":)";
    // Against the oldest usable snapshot that knew the device (it may be newer than `base`).
    const ControlSnapshot* b = nullptr;
    std::uint64_t before = 0;
    for (const auto& snap : control_snapshots) {
      if (mono - snap.mono > 15 * kNanosPerSecond || mono - snap.mono < kNanosPerSecond) continue;
      if (const auto it = snap.device_samples.find(*device); it != snap.device_samples.end()) {
        b = &snap;
        before = it->second;
        break;
      }
    }
    appendRate(s, b, mono, c.samples, before);
    s += '}';
  }
  s += "]}";
  return s;
}

std::string Pipeline::Impl::controlBuffer() const {
  const Nanos wall = time.wall();
  const auto js = journal->stats();
  std::string s = R"({"journal":)";
  appendControlJournal(s, js, wall);
  s += R"(,"sinks":[)";
  bool first = true;
  for (const auto& [name, b] : js.sinks) {
    s += first ? "{" : ",{";
    first = false;
    s += R"("name":)";
    json::appendString(s, name);
    s += fmt::format(R"(,"cursor":{},"backlog":{},"dropped":{},)", b.cursor, b.backlog, b.dropped);
    appendOldestUnsent(s, b.oldest_unsent, wall);
    s += '}';
  }
  s += "]}";
  return s;
}

std::string Pipeline::Impl::controlSinksView() const {
  const Nanos wall = time.wall(), mono = time.mono();
  std::string s = R"({"sinks":)";
  appendControlSinks(s, journal->stats(), wall, mono, controlBase(mono));
  s += '}';
  return s;
}

/// `gatewayctl alerts`: firing alerts (rule × series, as alert records: "time" is when it
/// fired), the undelivered outbox per notifier
/// (oldest first, at most 50 each) and each notifier's state. Pending states are only counted
/// (the engine keeps no list of them).
std::string Pipeline::Impl::controlAlerts() const {
  std::string s = fmt::format(R"({{"rules":{},"firing":[)", cfg.alerts.size());
  bool first = true;
  if (alert_engine) {
    for (const auto& e : alert_engine->firing()) {
      s += first ? "" : ",";
      first = false;
      alerts::appendAlertJson(s, e);
    }
  }
  const auto counters = alert_engine ? alert_engine->counters() : alerts::EngineCounters{};
  s += fmt::format(R"(],"pending":[],"pending_count":{},"undelivered":[)", counters.pending);
  first = true;
  std::vector<ReadingRecord> outbox;
  for (const auto& f : outboxes) {
    const auto st = f->status();
    const std::string notifier = st.name.substr(st.name.find('.') + 1);
    journal->readAlerts(f->cursor(), 50, outbox);
    bool head = true;
    for (const auto& r : outbox) {
      auto e = alerts::parseAlertJson(r.alert);
      if (!e || std::find(e->notify.begin(), e->notify.end(), notifier) == e->notify.end())
        continue;
      s += first ? "" : ",";
      first = false;
      alerts::appendAlertJson(s, *e);
      s.pop_back();  // '}': the delivery state follows
      s += R"(,"notifier":)";
      json::appendString(s, notifier);
      // Only the oldest is being tried; the others wait behind it (in order).
      s += fmt::format(R"(,"attempts":{},"last_error":)", head && !st.up ? st.retries : 0);
      json::appendString(s, head && !st.up ? st.last_error : std::string());
      s += '}';
      head = false;
    }
  }
  s += R"(],"notifiers":[)";
  first = true;
  for (const auto& f : outboxes) {
    const auto st = f->status();
    s += first ? "" : ",";
    first = false;
    s += R"({"name":)";
    json::appendString(s, st.name.substr(st.name.find('.') + 1));
    s += fmt::format(R"(,"up":{},"delivered":{},"rejected":{},"retries":{},"last_error":)", st.up,
                     st.sent, st.rejected, st.retries);
    json::appendString(s, st.last_error);
    s += '}';
  }
  s += "]}";
  return s;
}

std::string Pipeline::Impl::control(std::string_view command) const {
  controlSample(time.mono());
  if (command == "status") return controlStatus();
  if (command == "sensors") return controlSensors();
  if (command == "buffer") return controlBuffer();
  if (command == "sinks") return controlSinksView();
  if (command == "alerts") return controlAlerts();
  std::string s = R"({"error":)";
  json::appendString(s, fmt::format("unknown command '{}'", command.substr(0, 64)));
  s += '}';
  return s;
}

}  // namespace gw
