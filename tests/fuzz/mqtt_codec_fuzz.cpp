// Fuzz target for the MQTT v5 codec's packet parsing (protocols/mqtt/mqtt_codec.h): what a
// broker, or anything that answers on its port, can send us. The first byte and the
// remaining-length bytes are a fixed header; the packet body is parsed by its type as the client
// does. Every parse returns true or false, never reads outside the input, and a success yields
// views inside the input.
#include <cstdint>
#include <string>
#include <string_view>

#include "protocols/mqtt/mqtt_codec.h"
#include "tests/fuzz/fuzz_check.h"

using gw::fuzz::require;
using namespace gw::mqtt::codec;

namespace {

// A view that is empty or lies inside `in`.
bool inside(std::string_view v, std::string_view in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

void parseBody(const FixedHeader& h, std::string_view body) {
  static UserProperties user_properties;  // reused, as in the client
  switch (h.type) {
    case PacketType::kConnack: {
      Connack c;
      if (parseConnack(body, c)) {
        require(inside(c.assigned_client_id, body) && inside(c.reason_string, body) &&
                    inside(c.server_reference, body),
                "connack views");
        (void)reasonText(c.reason);
      }
      break;
    }
    case PacketType::kPublish: {
      Publish p;
      if (parsePublish(h.flags, body, p, user_properties)) {
        require(p.qos >= 0 && p.qos <= 2, "qos 0..2");
        require(p.qos == 0 || p.packet_id != 0, "qos > 0 has a packet id");
        require(!(p.qos == 0 && p.dup), "no dup on qos 0");
        require(inside(p.topic, body) && inside(p.payload, body), "publish views");
        for (const auto& [k, v] : user_properties) {
          require(inside(k, body) && inside(v, body), "user property views");
        }
      }
      break;
    }
    case PacketType::kSuback: {
      Suback s;
      if (parseSuback(body, s)) {
        require(inside(s.reason_codes, body) && inside(s.reason_string, body), "suback views");
        for (const char c : s.reason_codes) (void)reasonText(static_cast<std::uint8_t>(c));
      }
      break;
    }
    case PacketType::kDisconnect: {
      Disconnect d;
      if (parseDisconnect(body, d)) {
        require(inside(d.reason_string, body) && inside(d.server_reference, body),
                "disconnect views");
      }
      break;
    }
    default:
      // Any body as a property block, as every packet type with properties reads it.
      forEachProperty(body, [&](const Property& p) {
        require(inside(p.name, body) && inside(p.value, body), "property views");
        (void)propertyType(p.id);
        return true;
      });
  }
  (void)packetTypeName(h.type);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // A stream of packets, read the way the client reads its socket buffer.
  while (!in.empty()) {
    FixedHeader h;
    const Decode d = decodeFixedHeader(in, h);
    if (d != Decode::kOk) break;
    require(h.header_size >= 2 && h.header_size <= 5, "fixed header is 2..5 bytes");
    require(h.remaining_length <= kMaxVarInt, "remaining length fits");
    // A truncated packet: its body is what is there (the client waits; the parser must not
    // read past it either way).
    const std::string_view body = in.substr(h.header_size, h.remaining_length);
    parseBody(h, body);
    if (h.packetSize() > in.size()) break;
    in.remove_prefix(h.packetSize());
  }
  // Variable byte integers: decode, then encode what was decoded and get the same value back.
  std::uint32_t v = 0;
  size_t used = 0;
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  if (decodeVarInt(all, v, used) == Decode::kOk) {
    require(used >= 1 && used <= 4 && v <= kMaxVarInt, "varint size");
    std::string enc;
    appendVarInt(enc, v);
    require(enc.size() == varIntSize(v) && enc.size() <= used, "varint encoding size");
    std::uint32_t back = 0;
    size_t back_used = 0;
    require(decodeVarInt(enc, back, back_used) == Decode::kOk && back == v, "varint round trip");
  }
  return 0;
}
