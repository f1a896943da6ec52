#include "gateway/metrics/exposition.h"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <utility>
#include <vector>

namespace gw::metrics {
namespace {

/// Collects samples per metric family so that each family is written once, with its HELP and
/// TYPE lines first, whatever order the JSON has.
class Families {
 public:
  void add(const std::string& name, const char* type, const char* help, std::string labels,
           double value) {
    auto it = index_.find(name);
    if (it == index_.end()) {
      it = index_.emplace(name, families_.size()).first;
      families_.push_back({name, type, help, {}});
    }
    families_[it->second].samples.emplace_back(std::move(labels), value);
  }

  std::string text() const {
    std::string out;
    for (const auto& f : families_) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.type);
      for (const auto& [labels, value] : f.samples) {
        out += f.name;
        if (!labels.empty()) out += "{" + labels + "}";
        out += ' ';
        out += number(value);
        out += '\n';
      }
    }
    return out;
  }

 private:
  static std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{:.0f}", v);
    return fmt::format("{}", v);
  }
  struct Family {
    std::string name;
    const char* type;
    const char* help;
    std::vector<std::pair<std::string, double>> samples;
  };
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

/// Unix seconds with the fraction exact to the millisecond in print (ns / 1e9 in one step
/// would print 1795256130.1230001).
double seconds(Nanos t) {
  const Nanos whole = t / kNanosPerSecond;  // truncated on purpose: the fraction follows
  return static_cast<double>(whole) +
         static_cast<double>(t % kNanosPerSecond) / static_cast<double>(kNanosPerSecond);
}

std::string label(std::string_view name, std::string_view value) {
  return fmt::format("{}=\"{}\"", name, escapeLabel(value));
}

/// The figure `key` of a source, if it reports one.
const Figure* figure(const ComponentStatus& source, std::string_view key) {
  for (const auto& f : source.figures)
    if (f.key == key) return &f;
  return nullptr;
}

double number(std::uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::string escapeLabel(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string renderExposition(const StatusSnapshot& s) {
  const DaemonStatus daemon = s.daemon.value_or(DaemonStatus{});
  Families f;
  f.add("iot_gateway_build_info", "gauge", "gatewayd's version and gateway id (always 1).",
        label("version", daemon.version) + "," + label("gateway", s.gateway_id), 1);
  f.add("iot_gateway_start_time_seconds", "gauge", "When gatewayd started (Unix time).", "",
        seconds(daemon.started));
  f.add("iot_gateway_uptime_seconds", "gauge", "Seconds since gatewayd started.", "",
        static_cast<double>(daemon.now - daemon.started) / kNanosPerSecond);
  f.add("iot_gateway_config_reloads_total", "counter", "Successful config reloads (SIGHUP).", "",
        number(daemon.reloads));
  f.add("iot_gateway_config_reload_failures_total", "counter",
        "Reloads refused because the new config was bad (the old one kept running).", "",
        number(daemon.reload_failures));

  // Counters below restart from zero when a reload starts a new pipeline (Prometheus's rate()
  // handles such resets).
  f.add("iot_gateway_messages_total", "counter", "MQTT messages received.", "",
        number(s.counters.messages));
  f.add("iot_gateway_readings_total", "counter", "Readings decoded and written to the journal.", "",
        number(s.counters.readings));
  if (s.counters.rate_in)
    f.add("iot_gateway_readings_in_per_second", "gauge",
          "Readings in per second, averaged over the last 1-15 s.", "", *s.counters.rate_in);
  for (const auto& [reason, n] : s.counters.bad)
    f.add("iot_gateway_bad_messages_total", "counter", "Bad input by reason.",
          label("reason", reason), number(n));

  for (const auto& src : s.sources) {
    f.add("iot_gateway_source_up", "gauge", "1 when the source is connected.",
          label("source", src.name), src.up ? 1 : 0);
    if (src.name == "mqtt") {
      f.add("iot_gateway_mqtt_connected", "gauge", "1 when connected to the MQTT broker.", "",
            src.up ? 1 : 0);
      if (const Figure* v = figure(src, "connection_failures"))
        f.add("iot_gateway_mqtt_connection_failures_total", "counter",
              "Failed MQTT connection attempts and lost connections.", "", number(v->value));
      if (const Figure* v = figure(src, "in_flight"))
        f.add("iot_gateway_mqtt_in_flight", "gauge",
              "QoS 1 messages received and not yet acknowledged.", "", number(v->value));
    }
  }

  const JournalStatus& j = s.journal;
  f.add("iot_gateway_journal_rows", "gauge", "Committed rows in the journal.", "",
        number(j.stats.rows));
  f.add("iot_gateway_journal_file_bytes", "gauge", "Journal database + WAL size on disk.", "",
        number(j.stats.file_bytes));
  f.add("iot_gateway_journal_used_bytes", "gauge",
        "Journal pages in use (what buffer.max_size caps).", "", number(j.stats.used_bytes));
  f.add("iot_gateway_journal_max_bytes", "gauge", "buffer.max_size.", "", number(j.max_size));
  f.add("iot_gateway_journal_last_seq", "gauge", "Highest committed sequence number.", "",
        number(j.stats.last_seq));
  f.add("iot_gateway_journal_commits_total", "counter", "Journal transactions.", "",
        number(j.stats.commits));
  f.add("iot_gateway_journal_commit_failures_total", "counter",
        "Journal commits that failed (disk full, I/O error).", "", number(j.commit_failures));
  f.add("iot_gateway_journal_pending_rows", "gauge", "Rows waiting for the next commit.", "",
        number(j.pending));
  f.add("iot_gateway_journal_restores_total", "counter",
        "Times the journal file was pulled away (deleted, moved) and written back.", "",
        number(j.stats.restores));
  if (j.stats.min_free > 0) {
    f.add("iot_gateway_journal_disk_free_bytes", "gauge",
          "Free bytes on the journal's filesystem, as last checked.", "",
          number(j.stats.disk_free));
    f.add("iot_gateway_journal_min_free_bytes", "gauge", "buffer.min_free in bytes.", "",
          number(j.stats.min_free));
    f.add("iot_gateway_journal_low_disk", "gauge",
          "1 while free space is below buffer.min_free (the oldest unsent rows are dropped).", "",
          number(j.stats.low_disk ? 1 : 0));
  }

  for (const auto& sink : s.sinks) {
    const ForwarderStatus& st = sink.forwarder;
    const std::string l = label("sink", st.name);
    f.add("iot_gateway_sink_up", "gauge", "1 when the sink is up.", l, st.up ? 1 : 0);
    f.add("iot_gateway_sink_sent_total", "counter", "Records the sink's server confirmed.", l,
          number(st.sent));
    f.add("iot_gateway_sink_retries_total", "counter", "Failed send attempts.", l,
          number(st.retries));
    f.add("iot_gateway_sink_rejected_total", "counter",
          "Records the sink's server refused for good.", l, number(st.rejected));
    f.add("iot_gateway_sink_backlog_rows", "gauge",
          "Committed journal rows the sink has not confirmed yet.", l,
          number(sink.journal.backlog));
    f.add("iot_gateway_sink_dropped_total", "counter",
          "Rows the journal's caps dropped before the sink sent them (persisted).", l,
          number(sink.journal.dropped));
    f.add("iot_gateway_sink_oldest_unsent_age_seconds", "gauge",
          "Age (by commit time, 10 s resolution) of the oldest row not sent; 0 if none.", l,
          ageSeconds(sink.journal.oldest_unsent, s.wall).value_or(0));
    if (sink.rate_out)
      f.add("iot_gateway_sink_records_per_second", "gauge",
            "Records confirmed per second, averaged over the last 1-15 s.", l, *sink.rate_out);
    f.add("iot_gateway_sink_delivery_age_seconds", "gauge",
          "Event time to confirmation, over the last 8192 records.", l + ",quantile=\"0.5\"",
          st.age_p50_ms / 1000);
    f.add("iot_gateway_sink_delivery_age_seconds", "gauge", "", l + ",quantile=\"0.99\"",
          st.age_p99_ms / 1000);
  }

  f.add("iot_gateway_clock_devices", "gauge", "Devices with a clock estimate.", "",
        number(s.clock.devices));
  f.add("iot_gateway_clock_out_of_bounds_devices", "gauge",
        "Devices whose clock is off by more than clock.max_skew.", "",
        number(s.clock.out_of_bounds));
  f.add("iot_gateway_gateway_clock_offset_seconds", "gauge",
        "The gateway's clock against the broker's (receive - broker stamp).", "",
        static_cast<double>(s.clock.gateway.offset) / kNanosPerSecond);
  for (const auto& d : s.clock.per_device) {
    const std::string l = label("device", d.device);
    f.add("iot_gateway_device_clock_offset_seconds", "gauge",
          "Correction added to the device's timestamps (reference - device time).", l,
          static_cast<double>(d.clock.offset) / kNanosPerSecond);
    f.add("iot_gateway_device_clock_drift_ppm", "gauge", "Device clock drift.", l,
          d.clock.drift_ppm);
    f.add("iot_gateway_device_clock_out_of_bounds", "gauge",
          "1 when the device's clock is off by more than clock.max_skew.", l,
          d.clock.out_of_bounds ? 1 : 0);
    f.add("iot_gateway_device_clock_steps_total", "counter",
          "Clock steps (resets, jumps) detected.", l, number(d.clock.steps));
    f.add("iot_gateway_device_last_seen_timestamp_seconds", "gauge",
          "Reference time of the device's last reading (Unix time).", l,
          seconds(d.clock.last_seen));
    if (d.online)
      f.add("iot_gateway_device_online", "gauge",
            "1 while the device is online by its last birth/death (Sparkplug B).", l,
            *d.online ? 1 : 0);
  }

  const LimitsStatus& lim = s.limits;
  f.add("iot_gateway_max_series", "gauge", "[limits] max_series.", "", number(lim.max_series));
  f.add("iot_gateway_readings_over_limit_total", "counter",
        "Readings handled without windows, alerts or clock correction (past max_series).", "",
        number(lim.readings_over_limit));
  f.add("iot_gateway_clocks_evicted_total", "counter",
        "Device clock estimates dropped after [limits] series_idle.", "",
        number(lim.clocks_evicted));
  f.add("iot_gateway_loop_stall_seconds", "gauge",
        "Longest time the event loop was busy without turning, over the last 10-20 s.", "",
        static_cast<double>(lim.loop_stall_recent) / kNanosPerSecond);
  f.add("iot_gateway_loop_stall_max_seconds", "gauge",
        "Longest time the event loop was busy without turning, since start.", "",
        static_cast<double>(lim.loop_stall_max) / kNanosPerSecond);
  f.add("iot_gateway_loop_stall_cpu_seconds", "gauge",
        "Longest stall over the last 10-20 s counting only the loop thread's CPU time in it.", "",
        static_cast<double>(lim.loop_stall_cpu_recent) / kNanosPerSecond);
  f.add("iot_gateway_loop_stall_cpu_max_seconds", "gauge",
        "Longest stall since start counting only the loop thread's CPU time in it.", "",
        static_cast<double>(lim.loop_stall_cpu_max) / kNanosPerSecond);
  f.add("iot_gateway_loop_stall_runq_seconds", "gauge",
        "Longest stall over the last 10-20 s counting only the time the loop thread waited for a "
        "CPU in it (the run queue).",
        "", static_cast<double>(lim.loop_stall_runq_recent) / kNanosPerSecond);
  f.add("iot_gateway_loop_stall_runq_max_seconds", "gauge",
        "Longest stall since start counting only the time the loop thread waited for a CPU in it.",
        "", static_cast<double>(lim.loop_stall_runq_max) / kNanosPerSecond);
  for (std::size_t i = 0; i < LoopWorkMeter::kKinds; ++i)
    f.add("iot_gateway_loop_work_seconds", "gauge",
          "Longest run of a named handler on the event loop, over the last 10-20 s.",
          label("work", kLoopWorkNames[i]),
          static_cast<double>(lim.loop_work_recent_by_kind[i]) / kNanosPerSecond);
  for (std::size_t i = 0; i < LoopWorkMeter::kKinds; ++i)
    f.add("iot_gateway_loop_work_max_seconds", "gauge",
          "Longest run of a named handler on the event loop, since start.",
          label("work", kLoopWorkNames[i]),
          static_cast<double>(lim.loop_work_max_by_kind[i]) / kNanosPerSecond);

  const AlertStatus& a = s.alerts;
  f.add("iot_gateway_alert_rules", "gauge", "Alert rules.", "", number(a.rules));
  // Pending: rule × series waiting out their `for` (the engine counts them, it keeps no list).
  const std::pair<const char*, size_t> states[] = {
      {"firing", static_cast<size_t>(a.counters.firing)},
      {"pending", static_cast<size_t>(a.counters.pending)},
      {"undelivered", a.undelivered.size()}};
  for (const auto& [state, n] : states)
    f.add("iot_gateway_alerts", "gauge",
          "Alerts by state (undelivered: notifications not yet accepted by the receiver).",
          label("state", state), number(n));
  return f.text();
}

}  // namespace gw::metrics
