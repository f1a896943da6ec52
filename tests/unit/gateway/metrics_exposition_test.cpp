// The Prometheus exposition: HELP/TYPE once per family, label escaping, values from the views.
#include <doctest/doctest.h>

#include <string>

#include "gateway/metrics/exposition.h"

using gw::metrics::renderExposition;

TEST_CASE("exposition: families, values and escaping") {
  gw::StatusSnapshot s;
  gw::DaemonStatus d;
  d.version = "0.1.0";
  d.started = 1000 * gw::kNanosPerSecond;
  d.now = 1010 * gw::kNanosPerSecond;
  s.daemon = d;
  s.gateway_id = "gw\"1";
  s.counters.messages = 5;
  s.counters.readings = 7;
  s.counters.rate_in = 1.5;
  s.counters.bad = {{"no_template", 2}, {"not_json", 1}};
  gw::ComponentStatus mqtt;
  mqtt.name = "mqtt";
  mqtt.figures = {{"connection_failures", 4}, {"in_flight", 2, gw::Figure::Kind::kGauge}};
  s.sources.push_back(mqtt);
  gw::SinkStatus kafka;
  kafka.forwarder.name = "kafka";
  kafka.forwarder.up = false;
  kafka.forwarder.sent = 6;
  kafka.forwarder.retries = 2;
  kafka.forwarder.age_p50_ms = 10;
  kafka.forwarder.age_p99_ms = 20;
  kafka.forwarder.last_error = "x";
  kafka.journal.backlog = 1;  // no oldest_unsent, no rate_out
  s.sinks.push_back(kafka);
  s.alerts.counters.pending = 3;  // rule × series waiting out their `for`
  s.journal.stats.rows = 7;
  s.journal.stats.file_bytes = 4096;
  s.journal.stats.used_bytes = 2048;
  s.journal.stats.last_seq = 7;
  s.journal.stats.commits = 2;
  s.journal.max_size = 1048576;
  s.clock.devices = 1;
  s.clock.gateway.offset = 1'500'000;
  gw::DeviceClockStatus pump;
  pump.device = "pump 7\\a";
  pump.clock.offset = -2'500'000'000;
  pump.clock.drift_ppm = 3.5;
  pump.clock.steps = 1;
  pump.clock.last_seen = *gw::parseRfc3339("2026-11-21T10:15:30.123Z");
  s.clock.per_device.push_back(pump);
  s.limits.loop_stall_runq_recent = 4'500'000;  // waited 4.5 ms for a CPU in a stall
  s.limits.loop_stall_runq_max = 12'000'000;
  const std::string text = renderExposition(s);
  auto has = [&](const std::string& s) {
    INFO(s);
    CHECK(text.find(s + "\n") != std::string::npos);
  };
  has("# TYPE iot_gateway_readings_total counter");
  has("iot_gateway_readings_total 7");
  has("iot_gateway_uptime_seconds 10");
  has("iot_gateway_build_info{version=\"0.1.0\",gateway=\"gw\\\"1\"} 1");
  has("iot_gateway_bad_messages_total{reason=\"no_template\"} 2");
  has("iot_gateway_bad_messages_total{reason=\"not_json\"} 1");
  has("iot_gateway_mqtt_connected 1");
  has("iot_gateway_sink_up{sink=\"kafka\"} 0");
  has("iot_gateway_sink_backlog_rows{sink=\"kafka\"} 1");
  has("iot_gateway_sink_oldest_unsent_age_seconds{sink=\"kafka\"} 0");
  has("iot_gateway_sink_delivery_age_seconds{sink=\"kafka\",quantile=\"0.99\"} 0.02");
  has("iot_gateway_device_clock_offset_seconds{device=\"pump 7\\\\a\"} -2.5");
  has("iot_gateway_device_last_seen_timestamp_seconds{device=\"pump 7\\\\a\"} 1795256130.123");
  has("iot_gateway_alerts{state=\"firing\"} 0");
  has("iot_gateway_alerts{state=\"pending\"} 3");
  has("iot_gateway_loop_stall_runq_seconds 0.0045");
  has("iot_gateway_loop_stall_runq_max_seconds 0.012");
  // One HELP and TYPE per family, even with several samples.
  size_t n = 0;
  for (size_t p = 0;
       (p = text.find("# TYPE iot_gateway_bad_messages_total", p)) != std::string::npos; ++p)
    ++n;
  CHECK(n == 1);
  CHECK(text.find("rate_out") == std::string::npos);
  CHECK(text.find("iot_gateway_sink_records_per_second") == std::string::npos);  // null: left out
}

TEST_CASE("label escaping") { CHECK(gw::metrics::escapeLabel("a\"b\\c\nd") == "a\\\"b\\\\c\\nd"); }
