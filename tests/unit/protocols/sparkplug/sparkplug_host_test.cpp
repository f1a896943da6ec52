#include "protocols/sparkplug/sparkplug_host.h"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "protocols/sparkplug/sparkplug_b.pb-c.h"
#include "tests/support/sparkplug_payload.h"

namespace gw::sparkplug {
namespace {

using test::SpMetric;
using test::spPayload;

constexpr std::uint32_t kInt8 = 1, kInt32 = 3, kInt64 = 4, kUInt64 = 8, kFloat = 9, kDouble = 10,
                        kBoolean = 11, kString = 12;

struct Got {
  std::string device, metric;
  std::vector<std::pair<std::string, std::string>> tags;
  double value = 0;
  std::optional<Nanos> device_time;
  bool historical = false;
};

struct Recorder final : HostOutput, StateStore {
  std::vector<Got> readings;
  std::vector<std::string> rebirths;  // group/node
  std::map<std::string, bool> online_;
  std::map<std::string, int> skips;
  std::map<std::string, std::string, std::less<>> store;

  void reading(Series& s, const Decoded& d, bool historical) override {
    REQUIRE(d.values.size() == 1);
    CHECK(d.historical == historical);
    readings.push_back({s.device, s.metric, s.tags, d.values[0].value, d.device_time, historical});
  }
  void rebirth(std::string_view group, std::string_view node, std::string_view) override {
    rebirths.push_back(std::string(group) + "/" + std::string(node));
  }
  void online(std::string_view device, bool on) override { online_[std::string(device)] = on; }
  void skipped(std::string_view reason) override { ++skips[std::string(reason)]; }
  std::optional<std::string> get(std::string_view key) const override {
    auto it = store.find(key);
    if (it == store.end()) return std::nullopt;
    return it->second;
  }
  void put(std::string_view key, std::string value) override {
    store[std::string(key)] = std::move(value);
  }
};

SpMetric num(std::string name, std::uint64_t alias, double v, std::uint32_t type = kDouble) {
  SpMetric m;
  m.name = std::move(name);
  m.alias = alias;
  m.datatype = type;
  m.field = 13;
  m.d = v;
  return m;
}
SpMetric byAlias(std::uint64_t alias, double v) {
  SpMetric m;
  m.alias = alias;
  m.field = 13;
  m.d = v;
  return m;
}
SpMetric bdSeq(std::uint64_t v) {
  SpMetric m;
  m.name = "bdSeq";
  m.datatype = kUInt64;
  m.field = 11;
  m.u = v;
  return m;
}

constexpr Nanos kMs = kNanosPerMilli;

TEST_CASE("topics") {
  Topic t;
  REQUIRE(parseTopic("spBv1.0/plant1/DDATA/edge1/pump7", t));
  CHECK(t.group == "plant1");
  CHECK(t.edge_node == "edge1");
  CHECK(t.device == "pump7");
  CHECK(t.type == MessageType::kDData);
  REQUIRE(parseTopic("spBv1.0/plant1/NBIRTH/edge1", t));
  CHECK(t.type == MessageType::kNBirth);
  CHECK(t.device.empty());
  CHECK_FALSE(parseTopic("spBv1.0/plant1/NBIRTH/edge1/dev", t));  // node message with a device
  CHECK_FALSE(parseTopic("spBv1.0/plant1/DDATA/edge1", t));       // device message without
  CHECK_FALSE(parseTopic("spBv1.0/STATE/host", t));
  CHECK_FALSE(parseTopic("spBv1.0/plant1/XDATA/edge1", t));
  CHECK_FALSE(parseTopic("spBv1.0//NDATA/edge1", t));
  CHECK_FALSE(parseTopic("spAv1.0/plant1/NDATA/edge1", t));
  CHECK_FALSE(parseTopic("spBv1.0/plant1/DDATA/edge1/dev/extra", t));
}

TEST_CASE("births bind aliases; DATA by alias resolves to names, group tag, device, time") {
  Recorder r;
  Host h({}, &r);
  CHECK(h.handle("spBv1.0/g1/NBIRTH/e1", spPayload({bdSeq(3), num("Node/Temp", 1, 20.5)}, 0, 1000),
                 0, r) == nullptr);
  CHECK(h.handle("spBv1.0/g1/DBIRTH/e1/d1",
                 spPayload({num("Motor/RPM", 10, 1500), num("Motor/On", 11, 0, kBoolean)}, 1, 2000),
                 0, r) == nullptr);
  CHECK(r.online_["e1"]);
  CHECK(r.online_["e1/d1"]);
  r.readings.clear();

  SpMetric on = byAlias(11, 0);
  on.field = 14;
  on.u = 1;
  SpMetric rpm = byAlias(10, 1512.25);
  rpm.timestamp = 5000;  // the metric's own time wins over the payload's
  REQUIRE(h.handle("spBv1.0/g1/DDATA/e1/d1", spPayload({rpm, on}, 2, 4000), 0, r) == nullptr);
  REQUIRE(r.readings.size() == 2);
  CHECK(r.readings[0].device == "e1/d1");
  CHECK(r.readings[0].metric == "Motor/RPM");
  CHECK(r.readings[0].value == 1512.25);
  CHECK(r.readings[0].device_time == 5000 * kMs);
  CHECK(r.readings[0].tags == std::vector<std::pair<std::string, std::string>>{{"group", "g1"}});
  CHECK(r.readings[1].metric == "Motor/On");
  CHECK(r.readings[1].value == 1.0);
  CHECK(r.readings[1].device_time == 4000 * kMs);  // the payload's time

  // Node metrics: device = the edge node; bdSeq is not a reading.
  r.readings.clear();
  REQUIRE(h.handle("spBv1.0/g1/NDATA/e1", spPayload({byAlias(1, 21)}, 3, 6000), 0, r) == nullptr);
  REQUIRE(r.readings.size() == 1);
  CHECK(r.readings[0].device == "e1");
  CHECK(r.readings[0].metric == "Node/Temp");
  CHECK(r.rebirths.empty());
  CHECK(h.counters().births == 2);
}

TEST_CASE("numeric types, Boolean and the kinds that are not readings") {
  Recorder r;
  Host h({}, &r);
  SpMetric i8 = num("i8", 1, 0, kInt8);
  i8.field = 10;
  i8.u = 0xFFFFFFFB;  // -5 as protobufjs writes it (32-bit two's complement)
  SpMetric i32 = num("i32", 2, 0, kInt32);
  i32.field = 10;
  i32.u = static_cast<std::uint32_t>(-70000);
  SpMetric i64 = num("i64", 3, 0, kInt64);
  i64.field = 11;
  i64.u = static_cast<std::uint64_t>(std::int64_t{-5000000000});
  SpMetric u64 = num("u64", 4, 0, kUInt64);
  u64.field = 11;
  u64.u = 18000000000000000000ull;
  SpMetric f = num("f", 5, 0, kFloat);
  f.field = 12;
  f.d = 1.5;
  SpMetric s = num("s", 6, 0, kString);
  s.field = 15;
  s.s = "text";
  SpMetric b = num("b", 7, 0, kBoolean);
  b.field = 14;
  b.u = 0;
  h.handle("spBv1.0/g/NBIRTH/e", spPayload({i8, i32, i64, u64, f, s, b}, 0, 1), 0, r);
  std::map<std::string, double> got;
  for (const auto& g : r.readings) got[g.metric] = g.value;
  CHECK(got.size() == 6);
  CHECK(got["i8"] == -5);
  CHECK(got["i32"] == -70000);
  CHECK(got["i64"] == -5000000000.0);
  CHECK(got["u64"] == 18000000000000000000.0);
  CHECK(got["f"] == 1.5);
  CHECK(got["b"] == 0);
  CHECK(r.skips["string"] == 1);
}

TEST_CASE("quality other than Good is a tag; is_historical keeps its time and says so") {
  Recorder r;
  Host h({}, &r);
  SpMetric bad = num("t", 1, 5);
  bad.quality = 0;  // Bad
  SpMetric good = num("u", 2, 6);
  good.quality = 192;
  SpMetric hist = num("v", 3, 7);
  hist.historical = true;
  hist.timestamp = 42;
  h.handle("spBv1.0/g/NBIRTH/e", spPayload({bad, good, hist}, 0, 1000), 0, r);
  REQUIRE(r.readings.size() == 3);
  CHECK(r.readings[0].tags ==
        std::vector<std::pair<std::string, std::string>>{{"group", "g"}, {"quality", "0"}});
  CHECK(r.readings[1].tags == std::vector<std::pair<std::string, std::string>>{{"group", "g"}});
  CHECK(r.readings[2].historical);
  CHECK(r.readings[2].device_time == 42 * kMs);
  CHECK(h.counters().historical == 1);
}

TEST_CASE("DATA without a birth or with an unknown alias asks for a rebirth, rate-limited") {
  Recorder r;
  HostOptions o;
  o.rebirth_interval = 5000 * kMs;
  Host h(o, &r);
  // No birth at all: the reading is kept under alias:N and a rebirth is asked.
  h.handle("spBv1.0/g/DDATA/e/d", spPayload({byAlias(7, 1)}, 5, 1), 0, r);
  REQUIRE(r.readings.size() == 1);
  CHECK(r.readings[0].metric == "alias:7");
  CHECK(r.rebirths == std::vector<std::string>{"g/e"});
  // Again within the interval: no second request now, one when the interval has passed.
  h.handle("spBv1.0/g/DDATA/e/d", spPayload({byAlias(7, 2)}, 6, 1), 1000 * kMs, r);
  CHECK(r.rebirths.size() == 1);
  REQUIRE(h.nextDeadline());
  CHECK(*h.nextDeadline() == 5000 * kMs);
  h.tick(4999 * kMs, r);
  CHECK(r.rebirths.size() == 1);
  h.tick(5000 * kMs, r);
  CHECK(r.rebirths.size() == 2);

  // After the births, an alias the birth did not bind asks too.
  h.handle("spBv1.0/g/NBIRTH/e", spPayload({bdSeq(1)}, 0, 1), 20000 * kMs, r);
  h.handle("spBv1.0/g/DBIRTH/e/d", spPayload({num("m", 1, 0)}, 1, 1), 20000 * kMs, r);
  r.readings.clear();
  h.handle("spBv1.0/g/DDATA/e/d", spPayload({byAlias(1, 3), byAlias(9, 4)}, 2, 1), 30000 * kMs, r);
  REQUIRE(r.readings.size() == 2);
  CHECK(r.readings[0].metric == "m");
  CHECK(r.readings[1].metric == "alias:9");
  CHECK(r.rebirths.size() == 3);
}

TEST_CASE("a seq gap not filled within reorder_timeout asks for a rebirth; a filled one does not") {
  Recorder r;
  HostOptions o;
  o.reorder_timeout = 2000 * kMs;
  Host h(o, &r);
  h.handle("spBv1.0/g/NBIRTH/e", spPayload({bdSeq(0), num("m", 1, 0)}, 0, 1), 0, r);
  h.handle("spBv1.0/g/NDATA/e", spPayload({byAlias(1, 1)}, 1, 1), 0, r);
  // 2 is late: 3 arrives first, then 2 within the timeout.
  h.handle("spBv1.0/g/NDATA/e", spPayload({byAlias(1, 3)}, 3, 1), 100 * kMs, r);
  CHECK(h.nextDeadline() == 2100 * kMs);
  h.handle("spBv1.0/g/NDATA/e", spPayload({byAlias(1, 2)}, 2, 1), 500 * kMs, r);
  CHECK_FALSE(h.nextDeadline());
  h.tick(3000 * kMs, r);
  CHECK(r.rebirths.empty());
  CHECK(r.readings.size() == 4);  // every reading was taken at once, none held back

  // 5 never comes.
  h.handle("spBv1.0/g/NDATA/e", spPayload({byAlias(1, 4)}, 4, 1), 4000 * kMs, r);
  h.handle("spBv1.0/g/NDATA/e", spPayload({byAlias(1, 6)}, 6, 1), 4000 * kMs, r);
  h.tick(5999 * kMs, r);
  CHECK(r.rebirths.empty());
  h.tick(6000 * kMs, r);
  CHECK(r.rebirths == std::vector<std::string>{"g/e"});
  CHECK(h.counters().seq_gaps == 2);

  // seq wraps at 256 without a gap.
  Recorder r2;
  Host h2(o, &r2);
  h2.handle("spBv1.0/g/NDATA/e", spPayload({num("m", 1, 0)}, 255, 1), 0, r2);
  h2.handle("spBv1.0/g/NDATA/e", spPayload({num("m", 1, 0)}, 0, 1), 0, r2);
  CHECK(h2.counters().seq_gaps == 0);
}

TEST_CASE("NDEATH with the birth's bdSeq marks the node and its devices offline; a stale one not") {
  Recorder r;
  Host h({}, &r);
  h.handle("spBv1.0/g/NBIRTH/e", spPayload({bdSeq(4)}, 0, 1), 0, r);
  h.handle("spBv1.0/g/DBIRTH/e/d1", spPayload({num("m", 1, 0)}, 1, 1), 0, r);
  h.handle("spBv1.0/g/DBIRTH/e/d2", spPayload({num("m", 2, 0)}, 2, 1), 0, r);
  h.handle("spBv1.0/g/NDEATH/e", spPayload({bdSeq(3)}), 0, r);  // an older session's Will
  CHECK(r.online_["e/d1"]);
  CHECK(h.counters().stale_deaths == 1);
  h.handle("spBv1.0/g/DDEATH/e/d2", spPayload({}, 3, 1), 0, r);
  CHECK(r.online_["e/d1"]);
  CHECK_FALSE(r.online_["e/d2"]);
  h.handle("spBv1.0/g/NDEATH/e", spPayload({bdSeq(4)}), 0, r);
  CHECK_FALSE(r.online_["e"]);
  CHECK_FALSE(r.online_["e/d1"]);
  CHECK(h.counters().deaths == 2);
}

TEST_CASE("births survive a restart through the state store") {
  Recorder r;
  {
    Host h({}, &r);
    h.handle("spBv1.0/g/NBIRTH/e", spPayload({bdSeq(1), num("n", 5, 0)}, 0, 1), 0, r);
    h.handle("spBv1.0/g/DBIRTH/e/d", spPayload({num("Motor/RPM", 10, 0)}, 1, 1), 0, r);
  }
  CHECK(r.store.count("sparkplug/g/e") == 1);
  r.readings.clear();
  Host restarted({}, &r);
  restarted.handle("spBv1.0/g/DDATA/e/d", spPayload({byAlias(10, 7)}, 2, 1), 0, r);
  restarted.handle("spBv1.0/g/NDATA/e", spPayload({byAlias(5, 8)}, 3, 1), 0, r);
  REQUIRE(r.readings.size() == 2);
  CHECK(r.readings[0].metric == "Motor/RPM");
  CHECK(r.readings[1].metric == "n");
  CHECK(r.rebirths.empty());
  // A damaged state value is ignored (the node then asks for a rebirth).
  r.store["sparkplug/g/x"] = "\x01\x02";
  Host h3({}, &r);
  h3.handle("spBv1.0/g/NDATA/x", spPayload({byAlias(1, 1)}, 1, 1), 0, r);
  CHECK(r.rebirths == std::vector<std::string>{"g/x"});
}

TEST_CASE("memory is bounded: nodes and devices past the limits are read by name only") {
  Recorder r;
  HostOptions o;
  o.max_nodes = 1;
  o.max_devices = 1;
  Host h(o, &r);
  h.handle("spBv1.0/g/NBIRTH/e", spPayload({bdSeq(0)}, 0, 1), 0, r);
  h.handle("spBv1.0/g/DBIRTH/e/d1", spPayload({num("m", 1, 1)}, 1, 1), 0, r);
  h.handle("spBv1.0/g/DBIRTH/e/d2", spPayload({num("m", 2, 2)}, 2, 1), 0, r);
  h.handle("spBv1.0/g/NBIRTH/f", spPayload({num("n", 3, 3)}, 0, 1), 0, r);
  CHECK(h.counters().nodes == 1);
  REQUIRE(r.readings.size() == 3);  // every birth still gives its readings
  CHECK(r.readings[1].device == "e/d2");
  CHECK(r.readings[2].device == "f");
  CHECK(r.readings[2].metric == "n");
  CHECK(r.store.size() == 1);
  CHECK(r.store["sparkplug/g/e"].find("d2") == std::string::npos);
}

TEST_CASE("bad input: not protobuf, wrong topic; NCMD/DCMD are ignored") {
  Recorder r;
  Host h({}, &r);
  CHECK(std::string(h.handle("spBv1.0/g/NDATA/e", "\xff\xff\xff", 0, r)) == "sparkplug_payload");
  CHECK(std::string(h.handle("spBv1.0/g/BAD/e", "", 0, r)) == "sparkplug_topic");
  CHECK(h.handle("spBv1.0/g/NCMD/e", "\xff", 0, r) == nullptr);
  CHECK(r.readings.empty());
}

TEST_CASE("the rebirth and STATE payloads") {
  const std::string p = rebirthPayload(1234);
  auto* u = gw__sparkplug__pb__payload__unpack(nullptr, p.size(),
                                               reinterpret_cast<const uint8_t*>(p.data()));
  REQUIRE(u);
  REQUIRE(u->n_metrics == 1);
  CHECK(std::string(u->metrics[0]->name) == "Node Control/Rebirth");
  CHECK(u->metrics[0]->datatype == kBoolean);
  CHECK(u->metrics[0]->value_case == GW__SPARKPLUG__PB__METRIC__VALUE_BOOLEAN_VALUE);
  CHECK(u->metrics[0]->boolean_value);
  CHECK(u->timestamp == 1234);
  gw__sparkplug__pb__payload__free_unpacked(u, nullptr);
  CHECK(statePayload(true, 17) == R"({"online":true,"timestamp":17})");
  CHECK(statePayload(false, 17) == R"({"online":false,"timestamp":17})");
}

}  // namespace
}  // namespace gw::sparkplug
