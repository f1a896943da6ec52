#include "gateway/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "alerts/notify_config.h"
#include "protocols/kafka/kafka_config.h"
#include "protocols/mqtt/mqtt_config.h"
#include "protocols/timeseries/timeseries_config.h"
#include "tests/support/component_config.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using gw::config::ConfigError;

namespace {

struct TempDir : gw::test::TempDir {
  TempDir() : gw::test::TempDir("gw-config") {}
};

const char* kMinimal = R"(
[gateway]
id = "plant1-line3"
state_dir = "state"

[mqtt]
uri = "tcp://127.0.0.1:18830"

[[mqtt.subscribe]]
topic = "plant1/+/+/+"
template = "plant1/{line}/{device}/{metric}"
format = "json"
timestamp = "ts"
)";

/// Loads `text` and returns the error message ("" when it loads).
std::string errorOf(const std::string& text) {
  TempDir dir;
  try {
    gw::config::load(dir.write("gateway.toml", text));
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    // Keep only "line: key: reason" so the tests do not depend on the temp folder's name.
    return msg.substr(msg.find("gateway.toml:") + 13);
  }
  return "";
}

}  // namespace

TEST_CASE("a minimal config loads with defaults and paths relative to the file") {
  TempDir dir;
  const auto cfg = gw::config::load(dir.write("gateway.toml", kMinimal));
  CHECK(cfg.gateway.id == "plant1-line3");
  CHECK(cfg.gateway.state_dir == dir.path / "state");
  auto mqtt_table = gw::test::tableOf(cfg, "mqtt");
  const auto mqtt = gw::mqtt::parseConfig(*mqtt_table, cfg.gateway.id);
  CHECK(mqtt.client.host == "127.0.0.1");
  CHECK(mqtt.client.port == 18830);
  CHECK_FALSE(mqtt.client.tls.enabled);
  CHECK(mqtt.client.client_id == "plant1-line3");  // defaults to the gateway id
  CHECK_FALSE(mqtt.client.clean_start);
  REQUIRE(mqtt.subscriptions.size() == 1);
  CHECK(mqtt.subscriptions[0].qos == 1);
  CHECK(mqtt.subscriptions[0].payload.decoder.timestamp_field == "ts");
  CHECK(mqtt.subscriptions[0].payload.decoder.timestamp_unit == gw::payload::TimeUnit::kMillis);
  CHECK(cfg.buffer.commit_interval == 50 * gw::kNanosPerMilli);
  CHECK(cfg.buffer.max_size == 512ull << 20);
  // The default keeps the acknowledgement promise across a power cut.
  CHECK(cfg.buffer.synchronous == gw::buffer::Synchronous::kFull);
  CHECK(cfg.sinks.empty());
  REQUIRE(cfg.sources.size() == 1);
  CHECK(cfg.sources[0]->name() == "mqtt");
}

TEST_CASE("sinks, buffer and clock sections") {
  TempDir dir;
  dir.write("influx.token", "s3cret\n");
  const auto cfg = gw::config::load(dir.write("gateway.toml", std::string(kMinimal) + R"(
[clock]
reference = "receive"
tolerance = "10ms"

[buffer]
max_size = "64MiB"
max_age = "2d"
commit_interval = "20ms"
synchronous = "normal"

[kafka]
brokers = "127.0.0.1:9092"
readings_topic = "r"
delivery_timeout = "5s"
[kafka.properties]
"compression.type" = "zstd"
"linger.ms" = 20

[timeseries]
url = "http://127.0.0.1:8428/write"
token_file = "influx.token"
send = ["readings"]
)"));
  CHECK_FALSE(cfg.clock.broker_reference);
  CHECK(cfg.clock.tolerance == 10 * gw::kNanosPerMilli);
  CHECK(cfg.buffer.max_size == 64ull << 20);
  CHECK(cfg.buffer.max_age == 2 * 86400 * gw::kNanosPerSecond);
  CHECK(cfg.buffer.synchronous == gw::buffer::Synchronous::kNormal);
  REQUIRE(cfg.sinks.size() == 2);
  CHECK(cfg.sinks[0].config->name() == "kafka");
  CHECK(cfg.sinks[1].config->name() == "timeseries");
  auto kafka_table = gw::test::tableOf(cfg, "kafka");
  kafka_table->take("batch");
  kafka_table->take("retry_min");
  kafka_table->take("retry_max");
  const auto kafka = gw::kafka::parseConfig(*kafka_table, cfg.gateway.id);
  auto ts_table = gw::test::tableOf(cfg, "timeseries");
  for (const char* k : {"batch", "retry_min", "retry_max"}) ts_table->take(k);
  const auto timeseries = gw::timeseries::parseConfig(*ts_table);
  CHECK(kafka.readings_topic == "r");
  CHECK(kafka.properties.at("compression.type") == "zstd");
  CHECK(kafka.properties.at("linger.ms") == "20");
  CHECK(kafka.delivery_timeout == 5 * gw::kNanosPerSecond);
  CHECK(timeseries.token == "s3cret");
  CHECK(timeseries.send_readings);
  CHECK_FALSE(timeseries.send_aggregates);
}

TEST_CASE("errors name the file, the line, the key and the reason") {
  // A typo in a key is an error on its own line.
  CHECK(errorOf(std::string(kMinimal) + "\n[buffer]\ncomit_interval = \"50ms\"\n") ==
        "16: buffer.comit_interval: unknown key");
  CHECK(errorOf(std::string(kMinimal) + "\n[buffer]\ncommit_interval = \"50\"\n") ==
        "16: buffer.commit_interval: not a duration (use a number and a unit: ns, us, ms, s, m, "
        "h, d)");
  CHECK(errorOf(std::string(kMinimal) + "qos = 2\n") ==
        "14: mqtt.subscribe[0].qos: QoS 2 is not supported; use 1 (the journal makes delivery "
        "at-least-once end to end)");
  CHECK(errorOf(std::string(kMinimal) + "\n[buffer]\nsynchronous = \"extra\"\n") ==
        "16: buffer.synchronous: must be \"full\", \"normal\" or \"off\"");
  CHECK(errorOf(std::string(kMinimal) + "\n[buffer]\nmax_size = \"lots\"\n") ==
        "16: buffer.max_size: not a size (use e.g. \"64KiB\", \"512MiB\", \"1GiB\")");
  CHECK(errorOf(std::string(kMinimal) + "\n[[alert]]\nname = \"x\"\n") ==
        "15: alert[0].above: a rule needs a threshold (above or below) or no_data_for");
  CHECK(errorOf("[mqtt]\nuri = \"udp://x:1\"\n[[mqtt.subscribe]]\ntopic = \"a/+\"\ntemplate = "
                "\"a/{device}\"\nformat = \"fields\"\n") ==
        "2: mqtt.uri: unknown scheme 'udp' (use tcp:// or ssl://)");
  CHECK(errorOf("[mqtt]\nuri = \"tcp://x:99999\"\n[[mqtt.subscribe]]\ntopic = \"a/+\"\n") ==
        "2: mqtt.uri: port must be 1..65535");
  CHECK(
      errorOf("[mqtt]\n[[mqtt.subscribe]]\ntopic = \"a/+/+\"\ntemplate = \"a/{device}/{metric\"\n")
          .find("4: mqtt.subscribe[0].template: ") == 0);
  CHECK(errorOf("[mqtt]\n[[mqtt.subscribe]]\ntopic = \"a/+\"\ntemplate = \"a/{device}\"\n") ==
        "4: mqtt.subscribe[0].template: must capture {metric} for format json or value (format "
        "fields names metrics after the payload's fields)");
  CHECK(errorOf("[mqtt]\nuri = \"tcp://x:1\"\n") ==
        "1: mqtt.subscribe: at least one [[mqtt.subscribe]] is required");
  CHECK(errorOf("[gateway]\nid = \"x\"\n") ==
        "1: mqtt: a source is required: [mqtt] (with at least one [[mqtt.subscribe]]) or [coap]");
  CHECK(errorOf("[mqtt\nuri = 1\n").find("1: (syntax): ") == 0);
  CHECK(errorOf(std::string(kMinimal) + "\n[kafka]\nreadings_topic = \"r\"\n") ==
        "15: kafka.brokers: is required");
  // librdkafka's own check runs at parse time: --check-config refuses what start-up would.
  CHECK(errorOf(std::string(kMinimal) +
                "\n[kafka]\nbrokers = \"h:1\"\n[kafka.properties]\n\"linger.ms\" = 5\n"
                "\"compression.type\" = \"bogus\"\n") ==
        "19: kafka.properties.compression.type: Invalid value \"bogus\" for configuration "
        "property \"compression.codec\"");
  CHECK(errorOf(std::string(kMinimal) +
                "\n[kafka]\nbrokers = \"h:1\"\n[kafka.properties]\n\"no.such.thing\" = 1\n")
            .find("18: kafka.properties.no.such.thing: No such configuration property") == 0);
  CHECK(errorOf(std::string(kMinimal) + "password_file = \"nope.txt\"\n")
            .find("14: mqtt.subscribe[0].password_file: unknown key") == 0);
}

TEST_CASE("secrets come from files, never from the config itself") {
  CHECK(errorOf("[mqtt]\npassword = \"hunter2\"\n[[mqtt.subscribe]]\ntopic = \"a/+/+\"\ntemplate = "
                "\"a/{device}/{metric}\"\n") ==
        "2: mqtt.password: put the password in a file and set password_file (keeps it out of the "
        "config)");
  const std::string e = errorOf(
      "[mqtt]\npassword_file = \"missing.pw\"\n[[mqtt.subscribe]]\ntopic = \"a/+/+\"\ntemplate = "
      "\"a/{device}/{metric}\"\n");
  CHECK(e.find("2: mqtt.password_file: cannot read ") == 0);
  CHECK(e.find("missing.pw: No such file or directory") != std::string::npos);
}

TEST_CASE("windows are on by default; [aggregate] sets sizes, lateness and statistics") {
  TempDir dir;
  auto cfg = gw::config::load(dir.write("gateway.toml", kMinimal));
  CHECK(cfg.aggregate.enabled);
  REQUIRE(cfg.aggregate.windows.sizes.size() == 1);
  CHECK(cfg.aggregate.windows.sizes[0] == 10 * gw::kNanosPerSecond);
  CHECK(cfg.aggregate.windows.stats == gw::kDefaultStats);

  cfg = gw::config::load(dir.write("gateway.toml", std::string(kMinimal) + R"(
[aggregate]
window = ["10s", "1m"]
allowed_lateness = "500ms"
stats = ["p99", "stddev"]
sample_cap = 256
)"));
  REQUIRE(cfg.aggregate.windows.sizes.size() == 2);
  CHECK(cfg.aggregate.windows.sizes[1] == 60 * gw::kNanosPerSecond);
  CHECK(cfg.aggregate.windows.allowed_lateness == 500 * gw::kNanosPerMilli);
  CHECK(gw::has(cfg.aggregate.windows.stats, gw::Stat::kP99));
  CHECK(gw::has(cfg.aggregate.windows.stats, gw::Stat::kP95));  // the defaults stay
  CHECK(cfg.aggregate.windows.sample_cap == 256);

  const std::string m = kMinimal;
  CHECK(errorOf(m + "[aggregate]\nwindow = \"10 s\"\n") ==
        "15: aggregate.window: expected a duration such as \"10s\" or a list of them");
  CHECK(errorOf(m + "[aggregate]\nwindow = [\"10s\", \"10000ms\"]\n") ==
        "15: aggregate.window: window sizes must be distinct");
  CHECK(errorOf(m + "[aggregate]\nwindow = \"100ms\"\n") ==
        "15: aggregate.window: must be at least 1s");
  CHECK(errorOf(m + "[aggregate]\nstats = [\"p95\", \"median\"]\n") ==
        "15: aggregate.stats: entries must be count, min, max, avg, p95, sum, p50, p99, stddev, "
        "first or last");
  CHECK(errorOf(m + "[aggregate]\nwindows = \"10s\"\n") == "15: aggregate.windows: unknown key");
  CHECK(errorOf(m + "[timeseries]\nurl = \"http://127.0.0.1:9/write\"\nsend = []\n") ==
        "16: timeseries.send: must name readings, aggregates or both (remove [timeseries] to "
        "send nothing)");
}

TEST_CASE("[[alert]] rules and [notify] targets are checked with file:line: key: reason") {
  TempDir dir;
  const std::string key_file = dir.write("pd.key", "0123456789abcdef0123456789abcdef\n").string();
  const std::string m = std::string(kMinimal) + R"(
[notify.pagerduty]
routing_key_file = "pd.key"
url = "http://127.0.0.1:9/v2/enqueue"
[notify.webhook.ops]
url = "http://127.0.0.1:9/hook"
headers = { "X-Token" = "abc" }
)";
  // Lines: the notify block ends at 20.
  auto errorOf = [&](const std::string& text) {
    try {
      gw::config::load(dir.write("gateway.toml", text));
    } catch (const ConfigError& e) {
      std::string msg = e.what();
      return msg.substr(msg.find("gateway.toml:") + 13);
    }
    return std::string();
  };
  auto cfg = gw::config::load(dir.write("gateway.toml", m + R"(
[[alert]]
name = "bearing-overheat"
device = "pump-*"
metric = "bearing_temp"
on = "p95"
above = 85.0
clear_below = 80.0
for = "20s"
severity = "critical"
notify = ["pagerduty", "ops"]

[[alert]]
name = "sensor-silent"
no_data_for = "60s"
notify = ["ops"]
)"));
  REQUIRE(cfg.alerts.size() == 2);
  CHECK(cfg.alerts[0].on == "p95");
  CHECK(*cfg.alerts[0].clear_below == 80.0);
  CHECK(cfg.alerts[0].for_duration == 20 * gw::kNanosPerSecond);
  CHECK(cfg.alerts[1].no_data_for == 60 * gw::kNanosPerSecond);
  CHECK(cfg.notify.names() == std::vector<std::string>{"pagerduty", "ops"});
  auto pd_table = gw::test::tableOf(cfg, "notify.pagerduty");
  const auto pd = gw::alerts::parsePagerDuty(*pd_table, cfg.gateway.id);
  auto hook_table = gw::test::tableOf(cfg, "notify.webhook.ops");
  const auto hook = gw::alerts::parseWebhook(*hook_table, "ops");
  CHECK(pd.routing_key == "0123456789abcdef0123456789abcdef");
  CHECK(pd.gateway_id == "plant1-line3");
  CHECK(hook.name == "ops");
  CHECK(hook.headers.at(0).second == "abc");

  // A rule without a threshold.
  CHECK(errorOf(m + "[[alert]]\nname = \"x\"\nmetric = \"t\"\n") ==
        "21: alert[0].above: a rule needs a threshold (above or below) or no_data_for");
  // An unknown notifier.
  CHECK(errorOf(m + "[[alert]]\nname = \"x\"\nabove = 1.0\nnotify = [\"slack\"]\n") ==
        "24: alert[0].notify: unknown notifier \"slack\" (configured: pagerduty, ops)");
  // A statistic the windows do not compute.
  CHECK(errorOf(m + "[[alert]]\nname = \"x\"\non = \"p99\"\nabove = 1.0\n") ==
        "23: alert[0].on: the windows do not compute p99: add it to [aggregate] stats");
  // Two rules with one name.
  CHECK(
      errorOf(m + "[[alert]]\nname = \"x\"\nabove = 1.0\n[[alert]]\nname = \"x\"\nabove = 2.0\n") ==
      "25: alert[1].name: another [[alert]] is named 'x' already");
  // A routing-key file that is missing.
  const std::string missing =
      std::string(kMinimal) + "[notify.pagerduty]\nrouting_key_file = \"nope.key\"\n";
  CHECK(errorOf(missing).find("15: notify.pagerduty.routing_key_file: cannot read ") == 0);
  CHECK(errorOf(missing).find("nope.key: No such file or directory") != std::string::npos);
  // The key itself in the config.
  CHECK(errorOf(std::string(kMinimal) + "[notify.pagerduty]\nrouting_key = \"abc\"\n")
            .find("15: notify.pagerduty.routing_key: put the routing key in a file") == 0);
  CHECK(errorOf(m + "[[alert]]\nname = \"x\"\nabove = 1.0\nabvoe = 2.0\n") ==
        "24: alert[0].abvoe: unknown key");
}

TEST_CASE("a sink's target in status never shows a credential") {
  TempDir dir;
  const auto cfg = gw::config::load(dir.write(
      "gateway.toml", std::string(kMinimal) +
                          "\n[timeseries]\nurl = \"http://me:pw@db.local:8086/write?db=plant&u=me&"
                          "p=secret\"\n[notify.webhook.ops]\nurl = \"https://hooks.example/T0/"
                          "B0/token?x=1\"\n"));
  REQUIRE(cfg.sinks.size() == 1);
  CHECK(cfg.sinks[0].config->target() ==
        "http://db.local:8086/write?db=plant&u=<redacted>&p=<redacted>");
  REQUIRE(cfg.notify.notifiers.size() == 1);
  CHECK(cfg.notify.notifiers[0]->target() == "https://hooks.example/…");
}

TEST_CASE("buffer.min_free: the smaller of 256MiB and 5% by default, a size, a percentage or off") {
  TempDir dir;
  const auto load = [&](const std::string& buffer) {
    return gw::config::load(
               dir.write("gateway.toml", std::string(kMinimal) + "\n[buffer]\n" + buffer + "\n"))
        .buffer;
  };
  auto b = gw::config::load(dir.write("gateway.toml", kMinimal)).buffer;
  CHECK(b.min_free == 256ull << 20);
  CHECK(b.min_free_percent == 5);
  b = load("min_free = \"1GiB\"");
  CHECK(b.min_free == 1ull << 30);
  CHECK(b.min_free_percent == 0);
  b = load("min_free = \"10%\"");
  CHECK(b.min_free == 0);
  CHECK(b.min_free_percent == 10);
  for (const char* off : {"min_free = 0", "min_free = \"0\""}) {
    b = load(off);
    CHECK(b.min_free == 0);
    CHECK(b.min_free_percent == 0);
  }
  CHECK(errorOf(std::string(kMinimal) + "\n[buffer]\nmin_free = \"60%\"\n") ==
        "16: buffer.min_free: a percentage of the filesystem from 1% to 50%, e.g. \"5%\"");
  CHECK(errorOf(std::string(kMinimal) + "\n[buffer]\nmin_free = \"lots\"\n") ==
        "16: buffer.min_free: not a size (use e.g. \"64KiB\", \"512MiB\", \"1GiB\")");
}

TEST_CASE("[limits]: max_series and series_idle, checked against no_data_for") {
  TempDir dir;
  auto cfg = gw::config::load(dir.write("gateway.toml", kMinimal));
  CHECK(cfg.limits.max_series == 200'000);
  CHECK(cfg.limits.series_idle == 24 * 3600 * gw::kNanosPerSecond);
  cfg = gw::config::load(dir.write("gateway.toml", std::string(kMinimal) + R"(
[limits]
max_series = 5000
series_idle = "2h"
[metrics]
listen = "127.0.0.1:9108"
per_device_limit = 10
)"));
  CHECK(cfg.limits.max_series == 5000);
  CHECK(cfg.limits.series_idle == 7200 * gw::kNanosPerSecond);
  CHECK(cfg.metrics->per_device_limit == 10);
  CHECK(cfg.limits.series_idle == 7200 * gw::kNanosPerSecond);
  const std::string silent = R"(
[[alert]]
name = "silent"
device = "*"
metric = "*"
no_data_for = "3h"
)";
  CHECK(errorOf(std::string(kMinimal) + "[limits]\nseries_idle = \"2h\"\n" + silent) ==
        "15: limits.series_idle: must be longer than every no_data_for (alert 'silent' has 10800 "
        "s): a "
        "silent series would be forgotten before its alert fires");
  CHECK(errorOf(std::string(kMinimal) + "[limits]\nmax_series = 0\n").find("max_series") !=
        std::string::npos);
  CHECK(errorOf(std::string(kMinimal) + "[limits]\nmax_sries = 10\n").find("max_sries") !=
        std::string::npos);
  CHECK(errorOf(std::string(kMinimal) + "[limits]\nseries_idle = \"4h\"\n" + silent) == "");
}

TEST_CASE("mqtt.batch_wait: a tenth of buffer.commit_interval by default, at most a quarter") {
  TempDir dir;
  auto read = [&](const std::string& mqtt_keys) {
    std::string text = kMinimal;
    text.insert(text.find("\n[[mqtt.subscribe]]"), "\n" + mqtt_keys);
    const auto cfg = gw::config::load(dir.write("gateway.toml", text));
    auto table = gw::test::tableOf(cfg, "mqtt");
    return gw::mqtt::parseConfig(*table, cfg.gateway.id);
  };
  const gw::Nanos ms = gw::kNanosPerMilli;
  CHECK(gw::mqtt::batchWait(read(""), 50 * ms) == 5 * ms);
  CHECK(gw::mqtt::batchWait(read(""), 200 * ms) == 20 * ms);
  CHECK(gw::mqtt::batchWait(read("batch_wait = \"2ms\""), 50 * ms) == 2 * ms);
  CHECK(gw::mqtt::batchWait(read("batch_wait = \"0s\""), 50 * ms) == 0);
  CHECK(gw::mqtt::batchWait(read("batch_wait = \"40ms\""), 50 * ms) == 12500000);  // capped
  CHECK(errorOf("[mqtt]\nbatch_wait = \"2s\"\n[[mqtt.subscribe]]\ntopic = \"a/+/+\"\n"
                "template = \"a/{device}/{metric}\"\n") ==
        "2: mqtt.batch_wait: must be at most 1s (it delays every reading)");
  CHECK(errorOf("[mqtt]\nbatch_wait = \"soon\"\n[[mqtt.subscribe]]\ntopic = \"a/+/+\"\n"
                "template = \"a/{device}/{metric}\"\n")
            .find("2: mqtt.batch_wait: ") == 0);
}

TEST_CASE("gateway.stats_format: the short line by default, json on request, nothing else") {
  TempDir dir;
  auto load = [&](const std::string& keys) {
    std::string text = kMinimal;
    text.insert(text.find("\n[mqtt]"), "\n" + keys);
    return gw::config::load(dir.write("gateway.toml", text));
  };
  CHECK_FALSE(load("").gateway.stats_json);
  CHECK_FALSE(load("stats_format = \"short\"").gateway.stats_json);
  CHECK(load("stats_format = \"json\"").gateway.stats_json);
  std::string text = kMinimal;
  text.insert(text.find("\n[mqtt]"), "\nstats_format = \"JSON\"");
  CHECK(errorOf(text) ==
        "6: gateway.stats_format: must be \"short\" (one line to read) or \"json\" (for scripts)");
  text = kMinimal;
  text.insert(text.find("\n[mqtt]"), "\nstats_format = 1");
  CHECK(errorOf(text).find("6: gateway.stats_format: ") == 0);
}
