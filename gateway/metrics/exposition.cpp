#include "gateway/metrics/exposition.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <cmath>
#include <map>
#include <stdexcept>
#include <vector>

namespace gw::metrics {
namespace {

using simdjson::dom::element;

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
  return static_cast<double>(t / kNanosPerSecond) +
         static_cast<double>(t % kNanosPerSecond) / kNanosPerSecond;
}

std::string label(std::string_view name, std::string_view value) {
  return fmt::format("{}=\"{}\"", name, escapeLabel(value));
}

bool num(element e, std::string_view key, double& out) {
  element v;
  if (e.at_key(key).get(v)) return false;
  if (v.is_double()) {
    out = v.get_double().value();
  } else if (v.is_int64()) {
    out = static_cast<double>(v.get_int64().value());
  } else if (v.is_uint64()) {
    out = static_cast<double>(v.get_uint64().value());
  } else if (v.is_bool()) {
    out = v.get_bool().value() ? 1 : 0;
  } else {
    return false;
  }
  return true;
}

std::string str(element e, std::string_view key) {
  std::string_view v;
  if (e.at_key(key).get(v)) return "";
  return std::string(v);
}

element parse(simdjson::dom::parser& parser, std::string_view json, const char* what) {
  element doc;
  if (auto err = parser.parse(json.data(), json.size()).get(doc))
    throw std::runtime_error(fmt::format("{} view: {}", what, simdjson::error_message(err)));
  return doc;
}

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

std::string renderExposition(const DaemonInfo& daemon, std::string_view status_json,
                             std::string_view sensors_json, std::string_view alerts_json) {
  simdjson::dom::parser sp, dp, ap;
  const element status = parse(sp, status_json, "status");
  const element sensors = parse(dp, sensors_json, "sensors");
  const element alerts = parse(ap, alerts_json, "alerts");
  Families f;
  double v = 0;
  const std::string gw = str(status, "gateway");

  f.add("iot_gateway_build_info", "gauge", "gatewayd's version and gateway id (always 1).",
        label("version", daemon.version) + "," + label("gateway", gw), 1);
  f.add("iot_gateway_start_time_seconds", "gauge", "When gatewayd started (Unix time).", "",
        seconds(daemon.start_time));
  f.add("iot_gateway_uptime_seconds", "gauge", "Seconds since gatewayd started.", "",
        static_cast<double>(daemon.now - daemon.start_time) / kNanosPerSecond);
  f.add("iot_gateway_config_reloads_total", "counter", "Successful config reloads (SIGHUP).", "",
        static_cast<double>(daemon.reloads));
  f.add("iot_gateway_config_reload_failures_total", "counter",
        "Reloads refused because the new config was bad (the old one kept running).", "",
        static_cast<double>(daemon.reload_failures));

  // Counters below restart from zero when a reload starts a new pipeline (Prometheus's rate()
  // handles such resets).
  if (num(status, "messages", v))
    f.add("iot_gateway_messages_total", "counter", "MQTT messages received.", "", v);
  if (num(status, "readings", v))
    f.add("iot_gateway_readings_total", "counter", "Readings decoded and written to the journal.",
          "", v);
  if (num(status, "rate_in", v))
    f.add("iot_gateway_readings_in_per_second", "gauge",
          "Readings in per second, averaged over the last 1-15 s.", "", v);
  element bad;
  if (!status.at_key("bad").get(bad) && bad.is_object()) {
    for (auto [reason, n] : bad.get_object()) {
      if (n.is_uint64() || n.is_int64())
        f.add("iot_gateway_bad_messages_total", "counter", "Bad input by reason.",
              label("reason", reason),
              static_cast<double>(n.is_uint64() ? n.get_uint64().value() : n.get_int64().value()));
    }
  }

  simdjson::dom::array list;
  if (!status.at_key("sources").get(list)) {
    for (element src : list) {
      const std::string l = label("source", str(src, "name"));
      if (num(src, "up", v))
        f.add("iot_gateway_source_up", "gauge", "1 when the source is connected.", l, v);
      if (str(src, "name") == "mqtt") {
        if (num(src, "up", v))
          f.add("iot_gateway_mqtt_connected", "gauge", "1 when connected to the MQTT broker.", "",
                v);
        if (num(src, "connection_failures", v))
          f.add("iot_gateway_mqtt_connection_failures_total", "counter",
                "Failed MQTT connection attempts and lost connections.", "", v);
        if (num(src, "in_flight", v))
          f.add("iot_gateway_mqtt_in_flight", "gauge",
                "QoS 1 messages received and not yet acknowledged.", "", v);
      }
    }
  }

  element journal;
  if (!status.at_key("journal").get(journal)) {
    struct {
      const char* key;
      const char* name;
      const char* type;
      const char* help;
    } const fields[] = {
        {"rows", "iot_gateway_journal_rows", "gauge", "Committed rows in the journal."},
        {"file_bytes", "iot_gateway_journal_file_bytes", "gauge",
         "Journal database + WAL size on disk."},
        {"used_bytes", "iot_gateway_journal_used_bytes", "gauge",
         "Journal pages in use (what buffer.max_size caps)."},
        {"max_size", "iot_gateway_journal_max_bytes", "gauge", "buffer.max_size."},
        {"last_seq", "iot_gateway_journal_last_seq", "gauge", "Highest committed sequence number."},
        {"commits", "iot_gateway_journal_commits_total", "counter", "Journal transactions."},
        {"commit_failures", "iot_gateway_journal_commit_failures_total", "counter",
         "Journal commits that failed (disk full, I/O error)."},
        {"pending", "iot_gateway_journal_pending_rows", "gauge",
         "Rows waiting for the next commit."},
    };
    for (const auto& fd : fields)
      if (num(journal, fd.key, v)) f.add(fd.name, fd.type, fd.help, "", v);
  }

  if (!status.at_key("sinks").get(list)) {
    for (element sink : list) {
      const std::string l = label("sink", str(sink, "name"));
      if (num(sink, "up", v)) f.add("iot_gateway_sink_up", "gauge", "1 when the sink is up.", l, v);
      if (num(sink, "sent", v))
        f.add("iot_gateway_sink_sent_total", "counter", "Records the sink's server confirmed.", l,
              v);
      if (num(sink, "retries", v))
        f.add("iot_gateway_sink_retries_total", "counter", "Failed send attempts.", l, v);
      if (num(sink, "rejected", v))
        f.add("iot_gateway_sink_rejected_total", "counter",
              "Records the sink's server refused for good.", l, v);
      if (num(sink, "backlog", v))
        f.add("iot_gateway_sink_backlog_rows", "gauge",
              "Committed journal rows the sink has not confirmed yet.", l, v);
      if (num(sink, "dropped", v))
        f.add("iot_gateway_sink_dropped_total", "counter",
              "Rows the journal's caps dropped before the sink sent them (persisted).", l, v);
      if (!num(sink, "oldest_unsent_age_s", v)) v = 0;
      f.add("iot_gateway_sink_oldest_unsent_age_seconds", "gauge",
            "Age (by commit time, 10 s resolution) of the oldest row not sent; 0 if none.", l, v);
      if (num(sink, "rate_out", v))
        f.add("iot_gateway_sink_records_per_second", "gauge",
              "Records confirmed per second, averaged over the last 1-15 s.", l, v);
      if (num(sink, "age_p50_ms", v))
        f.add("iot_gateway_sink_delivery_age_seconds", "gauge",
              "Event time to confirmation, over the last 8192 records.", l + ",quantile=\"0.5\"",
              v / 1000);
      if (num(sink, "age_p99_ms", v))
        f.add("iot_gateway_sink_delivery_age_seconds", "gauge", "", l + ",quantile=\"0.99\"",
              v / 1000);
    }
  }

  element clock;
  if (!status.at_key("clock").get(clock)) {
    if (num(clock, "devices", v))
      f.add("iot_gateway_clock_devices", "gauge", "Devices with a clock estimate.", "", v);
    if (num(clock, "out_of_bounds", v))
      f.add("iot_gateway_clock_out_of_bounds_devices", "gauge",
            "Devices whose clock is off by more than clock.max_skew.", "", v);
  }
  element gateway;
  if (!sensors.at_key("gateway").get(gateway) && num(gateway, "offset_ms", v))
    f.add("iot_gateway_gateway_clock_offset_seconds", "gauge",
          "The gateway's clock against the broker's (receive - broker stamp).", "", v / 1000);
  if (!sensors.at_key("devices").get(list)) {
    for (element d : list) {
      const std::string l = label("device", str(d, "device"));
      if (num(d, "offset_ms", v))
        f.add("iot_gateway_device_clock_offset_seconds", "gauge",
              "Correction added to the device's timestamps (reference - device time).", l,
              v / 1000);
      if (num(d, "drift_ppm", v))
        f.add("iot_gateway_device_clock_drift_ppm", "gauge", "Device clock drift.", l, v);
      if (num(d, "out_of_bounds", v))
        f.add("iot_gateway_device_clock_out_of_bounds", "gauge",
              "1 when the device's clock is off by more than clock.max_skew.", l, v);
      if (num(d, "steps", v))
        f.add("iot_gateway_device_clock_steps_total", "counter",
              "Clock steps (resets, jumps) detected.", l, v);
      if (auto t = parseRfc3339(str(d, "last_seen")))
        f.add("iot_gateway_device_last_seen_timestamp_seconds", "gauge",
              "Reference time of the device's last reading (Unix time).", l, seconds(*t));
    }
  }

  if (num(alerts, "rules", v)) f.add("iot_gateway_alert_rules", "gauge", "Alert rules.", "", v);
  for (const char* state : {"firing", "pending", "undelivered"}) {
    if (!alerts.at_key(state).get(list))
      f.add("iot_gateway_alerts", "gauge",
            "Alerts by state (undelivered: notifications not yet accepted by the receiver).",
            label("state", state), static_cast<double>(list.size()));
  }
  return f.text();
}

}  // namespace gw::metrics
