// The Prometheus exposition: HELP/TYPE once per family, label escaping, values from the views.
#include <doctest/doctest.h>

#include <string>

#include "gateway/metrics/exposition.h"

using gw::metrics::DaemonInfo;
using gw::metrics::renderExposition;

TEST_CASE("exposition: families, values and escaping") {
  DaemonInfo d;
  d.version = "0.1.0";
  d.start_time = 1000 * gw::kNanosPerSecond;
  d.now = 1010 * gw::kNanosPerSecond;
  const std::string status =
      R"({"gateway":"gw\"1","messages":5,"readings":7,"rate_in":1.5,"bad_total":3,"bad":{"no_template":2,"not_json":1},"sources":[{"name":"mqtt","up":true,"connection_failures":4,"in_flight":2,"last_error":""}],"sinks":[{"name":"kafka","up":false,"sent":6,"retries":2,"rejected":0,"backlog":1,"dropped":0,"age_p50_ms":10,"age_p99_ms":20,"oldest_unsent_age_s":null,"rate_out":null,"last_error":"x"}],"journal":{"rows":7,"file_bytes":4096,"used_bytes":2048,"max_size":1048576,"last_seq":7,"commits":2,"commit_failures":0,"pending":0},"clock":{"devices":1,"out_of_bounds":0}})";
  const std::string sensors =
      R"({"gateway":{"offset_ms":1.5},"devices":[{"device":"pump 7\\a","offset_ms":-2500,"drift_ppm":3.5,"steps":1,"out_of_bounds":false,"last_seen":"2026-11-21T10:15:30.123Z"}]})";
  const std::string text = renderExposition(
      d, status, sensors, R"({"rules":0,"firing":[],"pending":[],"undelivered":[]})");
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
