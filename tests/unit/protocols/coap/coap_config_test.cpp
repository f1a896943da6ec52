// [coap] in gatewayd's config: defaults, and `file:line: key: reason` for every mistake.
#include "protocols/coap/coap_config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gateway/config.h"
#include "tests/support/component_config.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using gw::config::ConfigError;

namespace {

struct TempDir : gw::test::TempDir {
  TempDir() : gw::test::TempDir("gw-coap-config") {}
};

// Lines 1-7; [coap] starts on line 8.
const char* kBase = R"([gateway]
state_dir = "state"
[mqtt]
uri = "tcp://127.0.0.1:1883"
[[mqtt.subscribe]]
topic = "a/+/+"
template = "a/{device}/{metric}"
)";

std::string errorOf(const std::string& coap) {
  TempDir dir;
  try {
    gw::config::load(dir.write("gateway.toml", kBase + coap));
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    return msg.substr(msg.find("gateway.toml:") + 13);
  }
  return "";
}

}  // namespace

TEST_CASE("a [coap] section with resources and observations loads with defaults") {
  TempDir dir;
  dir.write("dev.psk", "secret-key\n");
  const auto cfg = gw::config::load(dir.write("gateway.toml", std::string(kBase) + R"(
[coap]
listen = "127.0.0.1:0"
[[coap.resource]]
path = "/sensors/{line}/{device}/{metric}"
[[coap.resource]]
path = "senml"
format = "senml"
max_payload = "8KiB"
[[coap.observe]]
uri = "coap://192.0.2.7/sensors/temp"
device = "boiler-7"
metric = "temperature"
[[coap.observe]]
discover = "coaps://192.0.2.8"
filter = "rt=temperature"
template = "sensors/{metric}"
device = "boiler-8"
format = "json"
reregister_after = "30s"
psk_identity = "gw"
psk_key_file = "dev.psk"
)"));
  auto table = gw::test::tableOf(cfg, "coap");
  REQUIRE(table);
  const auto o = gw::coap::parseConfig(*table);
  CHECK(o.listen);
  CHECK(o.listen_at.host == "127.0.0.1");
  CHECK(o.listen_at.port == 0);
  CHECK_FALSE(o.dtls_listen);
  REQUIRE(o.resources.size() == 2);
  CHECK(o.resources[0].path == "sensors/{line}/{device}/{metric}");  // leading '/' dropped
  CHECK(o.resources[0].payload.decoder.format == gw::payload::Format::kValue);  // the default
  CHECK(o.resources[1].payload.senml);
  CHECK(o.resources[1].payload.decoder.max_payload == 8192);
  REQUIRE(o.observe.size() == 2);
  CHECK(o.observe[0].uri == "coap://192.0.2.7/sensors/temp");
  CHECK(o.observe[0].reregister_after == 60 * gw::kNanosPerSecond);
  CHECK(o.observe[1].discover == "coaps://192.0.2.8");
  CHECK(o.observe[1].path_template == "sensors/{metric}");
  CHECK(o.observe[1].psk.key == "secret-key");
  CHECK(o.observe[1].reregister_after == 30 * gw::kNanosPerSecond);
  CHECK(o.observe[1].rediscover == 600 * gw::kNanosPerSecond);
}

TEST_CASE("listen defaults to every interface on 5683 when there are resources") {
  TempDir dir;
  const auto cfg = gw::config::load(dir.write(
      "gateway.toml",
      std::string(kBase) + "[coap]\n[[coap.resource]]\npath = \"s/{device}/{metric}\"\n"));
  auto table = gw::test::tableOf(cfg, "coap");
  REQUIRE(table);
  const auto o = gw::coap::parseConfig(*table);
  CHECK(o.listen);
  CHECK(o.listen_at.host == "0.0.0.0");
  CHECK(o.listen_at.port == 5683);
  const auto none = gw::config::load(dir.write("gateway.toml", kBase));
  CHECK(none.sources.size() == 1);  // mqtt only
}

TEST_CASE("[coap] mistakes: file:line: key: reason") {
  CHECK(errorOf("[coap]\n") ==
        "8: coap.resource: [coap] needs at least one [[coap.resource]] or [[coap.observe]]");
  CHECK(errorOf("[coap]\nlisten = \"0.0.0.0:5683\"\n[[coap.observe]]\nuri = \"coap://h/x\"\n"
                "device = \"d\"\nmetric = \"m\"\n") ==
        "9: coap.listen: nothing to serve: add a [[coap.resource]] (or remove listen)");
  CHECK(errorOf(
            "[coap]\nlisten = \"::1:5683\"\n[[coap.resource]]\npath = \"s/{device}/{metric}\"\n") ==
        "9: coap.listen: an IPv6 address goes in brackets: [::1]:PORT");
  CHECK(
      errorOf("[coap]\nlisen = \"0.0.0.0\"\n[[coap.resource]]\npath = \"s/{device}/{metric}\"\n") ==
      "9: coap.lisen: unknown key");
  // resources
  CHECK(errorOf("[coap]\n[[coap.resource]]\nformat = \"value\"\n") ==
        "9: coap.resource[0].path: is required");
  CHECK(errorOf("[coap]\n[[coap.resource]]\npath = \"s/{device}/{metric}\"\nformat = \"xml\"\n") ==
        "11: coap.resource[0].format: 'xml' is not value, json, fields or senml");
  CHECK(errorOf("[coap]\n[[coap.resource]]\npath = \"s/{metric}\"\n") ==
        "10: coap.resource[0].path: must capture {device} (e.g. \"sensors/{device}/{metric}\"); "
        "only format senml can take the device from the payload's base name");
  CHECK(errorOf("[coap]\n[[coap.resource]]\npath = \"s/{device}\"\nformat = \"json\"\n") ==
        "10: coap.resource[0].path: must capture {metric} for format value or json (fields and "
        "senml name metrics from the payload)");
  CHECK(errorOf("[coap]\n[[coap.resource]]\npath = \"s/+/{device}\"\nformat = \"fields\"\n") ==
        "10: coap.resource[0].path: level 2 '+': '+' and '#' are filters; use {name} to capture a "
        "level");
  CHECK(errorOf("[coap]\n[[coap.resource]]\npath = \"senml\"\nformat = \"senml\"\n"
                "timestamp = \"ts\"\n") ==
        "12: coap.resource[0].timestamp: SenML records carry their own time (bt/t)");
  CHECK(errorOf("[coap]\n[[coap.resource]]\npath = \"s/{device}/{metric}\"\nqos = 1\n") ==
        "11: coap.resource[0].qos: unknown key");
  // observations
  CHECK(errorOf("[coap]\n[[coap.observe]]\ndevice = \"d\"\n") ==
        "9: coap.observe[0].uri: one of uri (a resource to observe) or discover (a device to "
        "search) is required");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h/x\"\ndiscover = \"coap://h\"\n") ==
        "11: coap.observe[0].discover: set uri or discover, not both");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"http://h/x\"\n") ==
        "10: coap.observe[0].uri: expected coap://HOST[:PORT]/PATH or coaps://…");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h\"\n") ==
        "10: coap.observe[0].uri: must name a resource (coap://HOST[:PORT]/PATH)");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h/x\"\nmetric = \"m\"\n") ==
        "9: coap.observe[0].device: is required (the device this resource belongs to)");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h/x\"\ndevice = \"d\"\n") ==
        "9: coap.observe[0].metric: is required for format value or json");
  CHECK(errorOf("[coap]\n[[coap.observe]]\ndiscover = \"coap://h/sensors\"\ndevice = \"d\"\n") ==
        "10: coap.observe[0].discover: names a device (coap://HOST[:PORT]); its "
        "/.well-known/core is read, filtered by filter");
  CHECK(errorOf("[coap]\n[[coap.observe]]\ndiscover = \"coap://h\"\nfilter = \"temperature\"\n"
                "device = \"d\"\n") ==
        "11: coap.observe[0].filter: expected NAME=VALUE, e.g. \"rt=temperature\" (a trailing * "
        "matches a prefix)");
  CHECK(errorOf("[coap]\n[[coap.observe]]\ndiscover = \"coap://h\"\ndevice = \"d\"\n"
                "reregister_after = \"10ms\"\n") ==
        "12: coap.observe[0].reregister_after: must be at least 100ms");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h/x\"\ndevice = \"d\"\nmetric = \"m\"\n"
                "rediscover = \"5m\"\n") == "13: coap.observe[0].rediscover: only for discover");
  CHECK(errorOf("[coap]\n[[coap.observe]]\ndiscover = \"coaps://h\"\ndevice = \"d\"\n") ==
        "10: coap.observe[0].discover: coaps:// needs psk_identity and psk_key_file");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h/x\"\ndevice = \"d\"\nmetric = \"m\"\n"
                "psk_key = \"s3cret\"\n") ==
        "13: coap.observe[0].psk_key: put the key in a file and set psk_key_file");
  CHECK(errorOf("[coap]\n[[coap.observe]]\nuri = \"coap://h/x\"\ndevice = \"d\"\nmetric = \"m\"\n"
                "psk_identity = \"gw\"\n") ==
        "13: coap.observe[0].psk_identity: a pre-shared key is only used with coaps://");
  // DTLS server
  CHECK(errorOf("[coap]\ndtls_listen = \"0.0.0.0:5684\"\n[[coap.resource]]\n"
                "path = \"s/{device}/{metric}\"\n") ==
        "9: coap.dtls_listen: needs psk_key_file (the pre-shared key devices use)");
}
