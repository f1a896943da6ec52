#include "protocols/mqtt/mqtt_codec.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace gw::mqtt;
using namespace gw::mqtt::codec;

namespace {

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

std::string u16(std::uint16_t v) { return bytes({v >> 8, v & 0xFF}); }
std::string str(std::string_view s) {
  return u16(static_cast<std::uint16_t>(s.size())) + std::string(s);
}
std::string varInt(std::uint32_t v) {
  std::string s;
  appendVarInt(s, v);
  return s;
}

}  // namespace

TEST_CASE("variable byte integers: boundaries round-trip with the minimum length") {
  struct Case {
    std::uint32_t value;
    std::string encoded;
  };
  const std::vector<Case> cases = {
      {0, bytes({0x00})},
      {127, bytes({0x7F})},
      {128, bytes({0x80, 0x01})},
      {16'383, bytes({0xFF, 0x7F})},
      {16'384, bytes({0x80, 0x80, 0x01})},
      {2'097'151, bytes({0xFF, 0xFF, 0x7F})},
      {2'097'152, bytes({0x80, 0x80, 0x80, 0x01})},
      {268'435'455, bytes({0xFF, 0xFF, 0xFF, 0x7F})},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    std::string out;
    appendVarInt(out, c.value);
    CHECK(out == c.encoded);
    CHECK(varIntSize(c.value) == c.encoded.size());
    std::uint32_t v = 0;
    std::size_t used = 0;
    REQUIRE(decodeVarInt(out + "xyz", v, used) == Decode::kOk);
    CHECK(v == c.value);
    CHECK(used == c.encoded.size());
    // Every proper prefix needs more bytes.
    for (std::size_t n = 0; n < out.size(); ++n) {
      CHECK(decodeVarInt(std::string_view(out).substr(0, n), v, used) == Decode::kNeedMore);
    }
  }
}

TEST_CASE("variable byte integers: malformed lengths are rejected") {
  std::uint32_t v = 0;
  std::size_t used = 0;
  CHECK(decodeVarInt(bytes({0xFF, 0xFF, 0xFF, 0xFF, 0x7F}), v, used) == Decode::kMalformed);
  CHECK(decodeVarInt(bytes({0x80, 0x80, 0x80, 0x80}), v, used) == Decode::kMalformed);

  FixedHeader h;
  CHECK(decodeFixedHeader("", h) == Decode::kNeedMore);
  CHECK(decodeFixedHeader(bytes({0x30}), h) == Decode::kNeedMore);
  CHECK(decodeFixedHeader(bytes({0x30, 0x80}), h) == Decode::kNeedMore);
  CHECK(decodeFixedHeader(bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), h) == Decode::kMalformed);
  CHECK(decodeFixedHeader(bytes({0x00, 0x00}), h) == Decode::kMalformed);  // reserved type 0
  REQUIRE(decodeFixedHeader(bytes({0x3B, 0x80, 0x01}), h) == Decode::kOk);
  CHECK(h.type == PacketType::kPublish);
  CHECK(h.flags == 0x0B);
  CHECK(h.remaining_length == 128);
  CHECK(h.header_size == 3);
  CHECK(h.packetSize() == 131);

  // A string whose length prefix runs past the packet.
  const std::string short_string = bytes({0x00, 0x05, 'a', 'b'});
  Reader r(short_string);
  std::string_view s;
  CHECK_FALSE(r.lengthPrefixed(s));
  // A property block whose length runs past the packet.
  const std::string short_block = bytes({0x05, 0x01, 0x00});
  Reader r2(short_block);
  CHECK_FALSE(r2.properties(s));
}

TEST_CASE("PUBLISH: every property type is skipped, user properties are kept in order") {
  std::string props;
  props += bytes({prop::kPayloadFormatIndicator, 1});
  props += bytes({prop::kMessageExpiryInterval, 0, 0, 0x0E, 0x10});
  props += bytes({prop::kUserProperty}) + str("timestamp") + str("2026-11-21T10:15:30.123Z");
  props += bytes({prop::kContentType}) + str("application/json");
  props += bytes({prop::kResponseTopic}) + str("reply/here");
  props += bytes({prop::kCorrelationData}) + str(std::string("\x00\x01\x02", 3));
  props += bytes({prop::kSubscriptionIdentifier}) + varInt(300'000);  // 3-byte varint
  props += bytes({prop::kUserProperty}) + str("unit") + str("degC");
  props += bytes({prop::kUserProperty}) + str("timestamp") + str("dup name kept");

  const std::string payload = std::string("{\"value\":21.5}\0tail", 19);
  const std::string body =
      str("plant1/l3/pump-7/temp") + u16(0x1234) + varInt(props.size()) + props + payload;
  Publish p;
  UserProperties up = {{"stale", "entry"}};
  REQUIRE(parsePublish(0x0A /* DUP, QoS 1 */, body, p, up));
  CHECK(p.topic == "plant1/l3/pump-7/temp");
  CHECK(p.packet_id == 0x1234);
  CHECK(p.qos == 1);
  CHECK(p.dup);
  CHECK_FALSE(p.retain);
  CHECK_FALSE(p.has_topic_alias);
  CHECK(p.payload == payload);
  REQUIRE(up.size() == 3);
  CHECK(up[0].first == "timestamp");
  CHECK(up[0].second == "2026-11-21T10:15:30.123Z");
  CHECK(up[1].first == "unit");
  CHECK(up[1].second == "degC");
  CHECK(up[2].second == "dup name kept");

  // QoS 0: no packet identifier, empty payload allowed.
  const std::string body0 = str("a/b") + varInt(0);
  REQUIRE(parsePublish(0x01 /* retain */, body0, p, up));
  CHECK(p.qos == 0);
  CHECK(p.retain);
  CHECK(p.packet_id == 0);
  CHECK(p.payload.empty());
  CHECK(up.empty());
}

TEST_CASE("PUBLISH: malformed packets are rejected") {
  Publish p;
  UserProperties up;
  const std::string ok_props = varInt(0);
  CHECK_FALSE(parsePublish(0x06 /* QoS 3 */, str("t") + u16(1) + ok_props, p, up));
  CHECK_FALSE(parsePublish(0x08 /* DUP on QoS 0 */, str("t") + ok_props, p, up));
  CHECK_FALSE(parsePublish(0x02, str("t") + u16(0) + ok_props, p, up));  // packet id 0
  CHECK_FALSE(parsePublish(0x02, str("t") + u16(1), p, up));             // no property length
  CHECK_FALSE(parsePublish(0x02, str("t") + u16(1) + bytes({0x7F, 0x00}), p, up));  // unknown
  // Property block that says 10 bytes but the packet ends.
  CHECK_FALSE(parsePublish(0x02, str("t") + u16(1) + varInt(10) + bytes({0x01, 0x01}), p, up));
  // A user property truncated inside its value.
  CHECK_FALSE(parsePublish(
      0x00, str("t") + varInt(7) + bytes({prop::kUserProperty}) + str("a") + bytes({0x00, 0x09}), p,
      up));
  // Topic alias is reported so the client can refuse it.
  REQUIRE(parsePublish(0x00, str("t") + varInt(3) + bytes({prop::kTopicAlias, 0, 1}), p, up));
  CHECK(p.has_topic_alias);
}

TEST_CASE("CONNACK, SUBACK and DISCONNECT parse") {
  Connack c;
  const std::string props = bytes({prop::kServerKeepAlive, 0, 5}) +
                            bytes({prop::kAssignedClientIdentifier}) + str("auto-1") +
                            bytes({prop::kMaximumPacketSize, 0, 1, 0, 0}) +
                            bytes({prop::kReceiveMaximum, 0, 20}) + bytes({prop::kUserProperty}) +
                            str("k") + str("v") + bytes({prop::kReasonString}) + str("welcome");
  const std::string body = bytes({0x01, 0x00}) + varInt(props.size()) + props;
  REQUIRE(parseConnack(body, c));
  CHECK(c.session_present);
  CHECK(c.reason == 0);
  CHECK(c.has_server_keepalive);
  CHECK(c.server_keepalive == 5);
  CHECK(c.has_assigned_client_id);
  CHECK(c.assigned_client_id == "auto-1");
  CHECK(c.maximum_packet_size == 65536);
  CHECK(c.receive_maximum == 20);
  CHECK(c.reason_string == "welcome");

  Connack refused;
  REQUIRE(parseConnack(bytes({0x00, 0x86}), refused));  // properties omitted
  CHECK(refused.reason == 0x86);
  CHECK(reasonText(refused.reason) == "bad user name or password");
  CHECK(reasonText(0x87) == "not authorized");
  CHECK_FALSE(parseConnack(bytes({0x02, 0x00, 0x00}), c));  // reserved flag bit
  CHECK_FALSE(parseConnack(bytes({0x00}), c));

  Suback s;
  const std::string suback = u16(7) + varInt(0) + bytes({0x01, 0x87, 0x00});
  REQUIRE(parseSuback(suback, s));
  CHECK(s.packet_id == 7);
  CHECK(s.reason_codes == bytes({0x01, 0x87, 0x00}));
  CHECK_FALSE(parseSuback(u16(7) + varInt(0), s));  // no reason codes

  Disconnect d;
  REQUIRE(parseDisconnect("", d));
  CHECK(d.reason == 0);
  const std::string dprops = bytes({prop::kReasonString}) + str("maintenance");
  const std::string dbody = bytes({0x98}) + varInt(dprops.size()) + dprops;
  REQUIRE(parseDisconnect(dbody, d));
  CHECK(d.reason == 0x98);
  CHECK(d.reason_string == "maintenance");
}

TEST_CASE("outgoing packets have the exact wire format") {
  std::string out;
  appendPuback(out, 0xABCD);
  appendPingreq(out);
  appendDisconnect(out, reason::kSuccess);
  appendDisconnect(out, reason::kPacketTooLarge);
  CHECK(out == bytes({0x40, 0x02, 0xAB, 0xCD, 0xC0, 0x00, 0xE0, 0x00, 0xE0, 0x01, 0x95}));

  out.clear();
  const std::vector<SubscriptionFilter> filters = {{"plant1/+/+/+", 1}, {"cmd/#", 0}};
  REQUIRE(appendSubscribe(out, 9, filters));
  CHECK(out.size() == subscribePacketSize(filters));
  CHECK(out == bytes({0x82, 3 + 2 + 12 + 1 + 2 + 5 + 1, 0, 9, 0}) + str("plant1/+/+/+") +
                   bytes({0x11}) + str("cmd/#") + bytes({0x10}));

  out.clear();
  ConnectParams p;
  p.client_id = "gw-1";
  p.username = "user";
  p.password = "secret";
  p.keepalive_s = 30;
  p.session_expiry_s = 3600;
  p.receive_maximum = 100;
  p.maximum_packet_size = 1 << 20;
  REQUIRE(appendConnect(out, p));
  FixedHeader h;
  REQUIRE(decodeFixedHeader(out, h) == Decode::kOk);
  CHECK(h.type == PacketType::kConnect);
  CHECK(h.packetSize() == out.size());
  Reader r(std::string_view(out).substr(h.header_size));
  std::string_view name, client_id, user, password, block;
  std::uint8_t version = 0, flags = 0;
  std::uint16_t keepalive = 0;
  REQUIRE(r.lengthPrefixed(name));
  REQUIRE(r.u8(version));
  REQUIRE(r.u8(flags));
  REQUIRE(r.u16(keepalive));
  REQUIRE(r.properties(block));
  REQUIRE(r.lengthPrefixed(client_id));
  REQUIRE(r.lengthPrefixed(user));
  REQUIRE(r.lengthPrefixed(password));
  CHECK(r.remaining() == 0);
  CHECK(name == "MQTT");
  CHECK(version == 5);
  CHECK(flags == 0xC0);  // user name + password, clean start off
  CHECK(keepalive == 30);
  CHECK(client_id == "gw-1");
  CHECK(user == "user");
  CHECK(password == "secret");
  std::vector<std::pair<std::uint32_t, std::uint32_t>> numbers;
  REQUIRE(forEachProperty(block, [&](const Property& pr) {
    numbers.emplace_back(pr.id, pr.number);
    return true;
  }));
  const std::vector<std::pair<std::uint32_t, std::uint32_t>> expected = {
      {prop::kSessionExpiryInterval, 3600},
      {prop::kReceiveMaximum, 100},
      {prop::kMaximumPacketSize, 1u << 20},
      {prop::kTopicAliasMaximum, 0},
      {prop::kRequestProblemInformation, 1}};
  CHECK(numbers == expected);
}

TEST_CASE("outgoing PUBLISH and a CONNECT with a Will (Sparkplug STATE)") {
  std::string out;
  REQUIRE(appendPublish(out, "spBv1.0/STATE/gw", R"({"online":true})", 1, true, 7));
  FixedHeader h;
  REQUIRE(decodeFixedHeader(out, h) == Decode::kOk);
  CHECK(h.type == PacketType::kPublish);
  CHECK(h.flags == 0x03);  // QoS 1, retain
  CHECK(h.packetSize() == out.size());
  Publish p;
  UserProperties props;
  REQUIRE(parsePublish(h.flags, std::string_view(out).substr(h.header_size), p, props));
  CHECK(p.topic == "spBv1.0/STATE/gw");
  CHECK(p.payload == R"({"online":true})");
  CHECK(p.packet_id == 7);
  CHECK(p.qos == 1);
  CHECK(p.retain);

  out.clear();
  REQUIRE(appendPublish(out, "a/NCMD/b", "xy", 0, false, 0));
  CHECK(out == bytes({0x30, 2 + 8 + 1 + 2}) + str("a/NCMD/b") + bytes({0x00}) + "xy");

  out.clear();
  Will will{"spBv1.0/STATE/gw", R"({"online":false})", 1, true};
  ConnectParams c;
  c.client_id = "gw";
  c.will = &will;
  REQUIRE(appendConnect(out, c));
  REQUIRE(decodeFixedHeader(out, h) == Decode::kOk);
  Reader r(std::string_view(out).substr(h.header_size));
  std::string_view name, client_id, block, will_props, topic, payload;
  std::uint8_t version = 0, flags = 0;
  std::uint16_t keepalive = 0;
  REQUIRE(r.lengthPrefixed(name));
  REQUIRE(r.u8(version));
  REQUIRE(r.u8(flags));
  REQUIRE(r.u16(keepalive));
  REQUIRE(r.properties(block));
  REQUIRE(r.lengthPrefixed(client_id));
  REQUIRE(r.properties(will_props));
  REQUIRE(r.lengthPrefixed(topic));
  REQUIRE(r.lengthPrefixed(payload));
  CHECK(r.remaining() == 0);
  CHECK(flags == (0x04 | 0x08 | 0x20));  // Will flag, Will QoS 1, Will retain
  CHECK(will_props.empty());
  CHECK(topic == "spBv1.0/STATE/gw");
  CHECK(payload == R"({"online":false})");
}
