#include "protocols/mqtt/mqtt_codec.h"

#include <cassert>

namespace gw::mqtt::codec {

std::string_view packetTypeName(PacketType type) {
  switch (type) {
    case PacketType::kConnect:
      return "CONNECT";
    case PacketType::kConnack:
      return "CONNACK";
    case PacketType::kPublish:
      return "PUBLISH";
    case PacketType::kPuback:
      return "PUBACK";
    case PacketType::kPubrec:
      return "PUBREC";
    case PacketType::kPubrel:
      return "PUBREL";
    case PacketType::kPubcomp:
      return "PUBCOMP";
    case PacketType::kSubscribe:
      return "SUBSCRIBE";
    case PacketType::kSuback:
      return "SUBACK";
    case PacketType::kUnsubscribe:
      return "UNSUBSCRIBE";
    case PacketType::kUnsuback:
      return "UNSUBACK";
    case PacketType::kPingreq:
      return "PINGREQ";
    case PacketType::kPingresp:
      return "PINGRESP";
    case PacketType::kDisconnect:
      return "DISCONNECT";
    case PacketType::kAuth:
      return "AUTH";
  }
  return "reserved";
}

std::string_view reasonText(std::uint8_t code) {
  switch (code) {
    case 0x00:
      return "success";
    case 0x01:
      return "granted QoS 1";
    case 0x02:
      return "granted QoS 2";
    case 0x04:
      return "disconnect with will message";
    case 0x10:
      return "no matching subscribers";
    case 0x11:
      return "no subscription existed";
    case 0x18:
      return "continue authentication";
    case 0x19:
      return "re-authenticate";
    case 0x80:
      return "unspecified error";
    case 0x81:
      return "malformed packet";
    case 0x82:
      return "protocol error";
    case 0x83:
      return "implementation specific error";
    case 0x84:
      return "unsupported protocol version";
    case 0x85:
      return "client identifier not valid";
    case 0x86:
      return "bad user name or password";
    case 0x87:
      return "not authorized";
    case 0x88:
      return "server unavailable";
    case 0x89:
      return "server busy";
    case 0x8A:
      return "banned";
    case 0x8B:
      return "server shutting down";
    case 0x8C:
      return "bad authentication method";
    case 0x8D:
      return "keep alive timeout";
    case 0x8E:
      return "session taken over";
    case 0x8F:
      return "topic filter invalid";
    case 0x90:
      return "topic name invalid";
    case 0x91:
      return "packet identifier in use";
    case 0x92:
      return "packet identifier not found";
    case 0x93:
      return "receive maximum exceeded";
    case 0x94:
      return "topic alias invalid";
    case 0x95:
      return "packet too large";
    case 0x96:
      return "message rate too high";
    case 0x97:
      return "quota exceeded";
    case 0x98:
      return "administrative action";
    case 0x99:
      return "payload format invalid";
    case 0x9A:
      return "retain not supported";
    case 0x9B:
      return "QoS not supported";
    case 0x9C:
      return "use another server";
    case 0x9D:
      return "server moved";
    case 0x9E:
      return "shared subscriptions not supported";
    case 0x9F:
      return "connection rate exceeded";
    case 0xA0:
      return "maximum connect time";
    case 0xA1:
      return "subscription identifiers not supported";
    case 0xA2:
      return "wildcard subscriptions not supported";
  }
  return "unknown reason code";
}

PropertyType propertyType(std::uint32_t id) {
  switch (id) {
    case prop::kPayloadFormatIndicator:
    case prop::kRequestProblemInformation:
    case prop::kRequestResponseInformation:
    case prop::kMaximumQos:
    case prop::kRetainAvailable:
    case prop::kWildcardSubscriptionAvailable:
    case prop::kSubscriptionIdentifierAvailable:
    case prop::kSharedSubscriptionAvailable:
      return PropertyType::kByte;
    case prop::kServerKeepAlive:
    case prop::kReceiveMaximum:
    case prop::kTopicAliasMaximum:
    case prop::kTopicAlias:
      return PropertyType::kTwoByte;
    case prop::kMessageExpiryInterval:
    case prop::kSessionExpiryInterval:
    case prop::kWillDelayInterval:
    case prop::kMaximumPacketSize:
      return PropertyType::kFourByte;
    case prop::kSubscriptionIdentifier:
      return PropertyType::kVarInt;
    case prop::kContentType:
    case prop::kResponseTopic:
    case prop::kAssignedClientIdentifier:
    case prop::kAuthenticationMethod:
    case prop::kResponseInformation:
    case prop::kServerReference:
    case prop::kReasonString:
      return PropertyType::kString;
    case prop::kCorrelationData:
    case prop::kAuthenticationData:
      return PropertyType::kBinary;
    case prop::kUserProperty:
      return PropertyType::kStringPair;
  }
  return PropertyType::kUnknown;
}

std::size_t varIntSize(std::uint32_t v) {
  assert(v <= kMaxVarInt);
  if (v < 128) return 1;
  if (v < 16'384) return 2;
  if (v < 2'097'152) return 3;
  return 4;
}

void appendVarInt(std::string& out, std::uint32_t v) {
  assert(v <= kMaxVarInt);
  do {
    auto byte = static_cast<std::uint8_t>(v & 0x7F);
    v >>= 7;
    if (v > 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (v > 0);
}

Decode decodeVarInt(std::string_view in, std::uint32_t& value, std::size_t& used) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    if (i >= in.size()) return Decode::kNeedMore;
    const auto byte = static_cast<std::uint8_t>(in[i]);
    v |= static_cast<std::uint32_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      value = v;
      used = i + 1;
      return Decode::kOk;
    }
  }
  return Decode::kMalformed;  // a fifth byte would be needed
}

Decode decodeFixedHeader(std::string_view in, FixedHeader& out) {
  if (in.empty()) return Decode::kNeedMore;
  const auto first = static_cast<std::uint8_t>(in[0]);
  if ((first >> 4) == 0) return Decode::kMalformed;  // packet type 0 is reserved
  std::uint32_t length = 0;
  std::size_t used = 0;
  const Decode d = decodeVarInt(in.substr(1), length, used);
  if (d != Decode::kOk) return d;
  out.type = static_cast<PacketType>(first >> 4);
  out.flags = first & 0x0F;
  out.remaining_length = length;
  out.header_size = 1 + used;
  return Decode::kOk;
}

// ---- Reader --------------------------------------------------------------------------------

bool Reader::take(std::size_t n, std::string_view& v) {
  if (n > remaining()) {
    pos_ = data_.size();
    return false;
  }
  v = data_.substr(pos_, n);
  pos_ += n;
  return true;
}

bool Reader::u8(std::uint8_t& v) {
  std::string_view b;
  if (!take(1, b)) return false;
  v = static_cast<std::uint8_t>(b[0]);
  return true;
}

bool Reader::u16(std::uint16_t& v) {
  std::string_view b;
  if (!take(2, b)) return false;
  v = static_cast<std::uint16_t>((static_cast<std::uint8_t>(b[0]) << 8) |
                                 static_cast<std::uint8_t>(b[1]));
  return true;
}

bool Reader::u32(std::uint32_t& v) {
  std::string_view b;
  if (!take(4, b)) return false;
  v = 0;
  for (char c : b) v = (v << 8) | static_cast<std::uint8_t>(c);
  return true;
}

bool Reader::varInt(std::uint32_t& v) {
  std::size_t used = 0;
  if (decodeVarInt(rest(), v, used) != Decode::kOk) {
    pos_ = data_.size();
    return false;
  }
  pos_ += used;
  return true;
}

bool Reader::lengthPrefixed(std::string_view& v) {
  std::uint16_t n = 0;
  return u16(n) && take(n, v);
}

bool Reader::properties(std::string_view& block) {
  std::uint32_t n = 0;
  return varInt(n) && take(n, block);
}

bool readProperty(Reader& r, Property& p) {
  if (!r.varInt(p.id)) return false;
  switch (propertyType(p.id)) {
    case PropertyType::kByte: {
      std::uint8_t v = 0;
      if (!r.u8(v)) return false;
      p.number = v;
      return true;
    }
    case PropertyType::kTwoByte: {
      std::uint16_t v = 0;
      if (!r.u16(v)) return false;
      p.number = v;
      return true;
    }
    case PropertyType::kFourByte:
      return r.u32(p.number);
    case PropertyType::kVarInt:
      return r.varInt(p.number);
    case PropertyType::kString:
    case PropertyType::kBinary:
      return r.lengthPrefixed(p.value);
    case PropertyType::kStringPair:
      return r.lengthPrefixed(p.name) && r.lengthPrefixed(p.value);
    case PropertyType::kUnknown:
      return false;
  }
  return false;
}

// ---- incoming packets ----------------------------------------------------------------------

bool parseConnack(std::string_view body, Connack& out) {
  Reader r(body);
  std::uint8_t flags = 0;
  if (!r.u8(flags) || !r.u8(out.reason)) return false;
  if ((flags & 0xFE) != 0) return false;
  out.session_present = (flags & 0x01) != 0;
  if (r.remaining() == 0) return true;  // some brokers omit the properties on a refusal
  std::string_view block;
  if (!r.properties(block) || r.remaining() != 0) return false;
  return forEachProperty(block, [&out](const Property& p) {
    switch (p.id) {
      case prop::kSessionExpiryInterval:
        out.has_session_expiry = true;
        out.session_expiry = p.number;
        break;
      case prop::kServerKeepAlive:
        out.has_server_keepalive = true;
        out.server_keepalive = static_cast<std::uint16_t>(p.number);
        break;
      case prop::kAssignedClientIdentifier:
        out.has_assigned_client_id = true;
        out.assigned_client_id = p.value;
        break;
      case prop::kMaximumPacketSize:
        if (p.number == 0) return false;  // protocol error
        out.maximum_packet_size = p.number;
        break;
      case prop::kReceiveMaximum:
        if (p.number == 0) return false;
        out.receive_maximum = static_cast<std::uint16_t>(p.number);
        break;
      case prop::kMaximumQos:
        if (p.number > 1) return false;
        out.maximum_qos = static_cast<std::uint8_t>(p.number);
        break;
      case prop::kWildcardSubscriptionAvailable:
        out.wildcard_subscription_available = p.number != 0;
        break;
      case prop::kReasonString:
        out.reason_string = p.value;
        break;
      case prop::kServerReference:
        out.server_reference = p.value;
        break;
      default:
        break;  // other properties do not change what a subscriber does
    }
    return true;
  });
}

bool parsePublish(std::uint8_t flags, std::string_view body, Publish& out,
                  UserProperties& user_properties) {
  user_properties.clear();
  out.dup = (flags & 0x08) != 0;
  out.qos = (flags >> 1) & 0x03;
  out.retain = (flags & 0x01) != 0;
  out.has_topic_alias = false;
  out.packet_id = 0;
  if (out.qos == 3) return false;
  if (out.qos == 0 && out.dup) return false;
  Reader r(body);
  if (!r.lengthPrefixed(out.topic)) return false;
  if (out.qos > 0 && (!r.u16(out.packet_id) || out.packet_id == 0)) return false;
  std::string_view block;
  if (!r.properties(block)) return false;
  const bool ok = forEachProperty(block, [&](const Property& p) {
    if (p.id == prop::kUserProperty) {
      user_properties.emplace_back(p.name, p.value);
    } else if (p.id == prop::kTopicAlias) {
      out.has_topic_alias = true;
    }
    return true;
  });
  if (!ok) return false;
  out.payload = r.rest();
  return true;
}

bool parseSuback(std::string_view body, Suback& out) {
  Reader r(body);
  std::string_view block;
  if (!r.u16(out.packet_id) || !r.properties(block)) return false;
  const bool ok = forEachProperty(block, [&out](const Property& p) {
    if (p.id == prop::kReasonString) out.reason_string = p.value;
    return true;
  });
  out.reason_codes = r.rest();
  return ok && !out.reason_codes.empty();
}

bool parseDisconnect(std::string_view body, Disconnect& out) {
  Reader r(body);
  out.reason = 0;
  if (r.remaining() == 0) return true;  // reason 0x00, no properties
  if (!r.u8(out.reason)) return false;
  if (r.remaining() == 0) return true;
  std::string_view block;
  if (!r.properties(block) || r.remaining() != 0) return false;
  return forEachProperty(block, [&out](const Property& p) {
    if (p.id == prop::kReasonString) out.reason_string = p.value;
    if (p.id == prop::kServerReference) out.server_reference = p.value;
    return true;
  });
}

// ---- outgoing packets ----------------------------------------------------------------------

namespace {

void putU8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }
void putU16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}
void putU32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}
bool putString(std::string& out, std::string_view s) {
  if (s.size() > 0xFFFF) return false;
  putU16(out, static_cast<std::uint16_t>(s.size()));
  out.append(s);
  return true;
}
void putHeader(std::string& out, PacketType type, std::uint8_t flags, std::size_t remaining) {
  putU8(out, static_cast<std::uint8_t>((static_cast<std::uint8_t>(type) << 4) | flags));
  appendVarInt(out, static_cast<std::uint32_t>(remaining));
}

}  // namespace

bool appendConnect(std::string& out, const ConnectParams& p) {
  std::string props;
  if (p.session_expiry_s > 0) {
    putU8(props, prop::kSessionExpiryInterval);
    putU32(props, p.session_expiry_s);
  }
  putU8(props, prop::kReceiveMaximum);
  putU16(props, p.receive_maximum == 0 ? 1 : p.receive_maximum);
  if (p.maximum_packet_size > 0) {
    putU8(props, prop::kMaximumPacketSize);
    putU32(props, p.maximum_packet_size);
  }
  putU8(props, prop::kTopicAliasMaximum);
  putU16(props, 0);
  putU8(props, prop::kRequestProblemInformation);
  putU8(props, 1);

  std::string body;
  body.reserve(32 + props.size() + p.client_id.size() + p.username.size() + p.password.size());
  putString(body, "MQTT");
  putU8(body, 5);  // protocol version
  std::uint8_t flags = 0;
  if (!p.username.empty()) flags |= 0x80;
  if (!p.password.empty()) flags |= 0x40;
  if (p.clean_start) flags |= 0x02;
  if (p.will)
    flags |=
        static_cast<std::uint8_t>(0x04 | ((p.will->qos & 0x03) << 3) | (p.will->retain ? 0x20 : 0));
  putU8(body, flags);
  putU16(body, p.keepalive_s);
  appendVarInt(body, static_cast<std::uint32_t>(props.size()));
  body += props;
  if (!putString(body, p.client_id)) return false;
  if (p.will) {
    appendVarInt(body, 0);  // no Will properties
    if (!putString(body, p.will->topic) || !putString(body, p.will->payload)) return false;
  }
  if (!p.username.empty() && !putString(body, p.username)) return false;
  if (!p.password.empty() && !putString(body, p.password)) return false;

  putHeader(out, PacketType::kConnect, 0, body.size());
  out += body;
  return true;
}

std::size_t subscribePacketSize(std::span<const SubscriptionFilter> filters) {
  std::size_t remaining = 2 + 1;  // packet identifier, empty property block
  for (const auto& f : filters) remaining += 2 + f.filter.size() + 1;
  if (remaining > kMaxVarInt) return remaining + 5;
  return 1 + varIntSize(static_cast<std::uint32_t>(remaining)) + remaining;
}

bool appendSubscribe(std::string& out, std::uint16_t packet_id,
                     std::span<const SubscriptionFilter> filters) {
  std::size_t remaining = 2 + 1;
  for (const auto& f : filters) {
    if (f.filter.size() > 0xFFFF) return false;
    remaining += 2 + f.filter.size() + 1;
  }
  if (remaining > kMaxVarInt) return false;
  putHeader(out, PacketType::kSubscribe, 0x02, remaining);
  putU16(out, packet_id);
  appendVarInt(out, 0);  // no properties
  for (const auto& f : filters) {
    putString(out, f.filter);
    // Bits 0-1 maximum QoS, bits 4-5 Retain Handling = 1.
    putU8(out, static_cast<std::uint8_t>((f.qos & 0x03) | (1 << 4)));
  }
  return true;
}

void appendPuback(std::string& out, std::uint16_t packet_id) {
  putHeader(out, PacketType::kPuback, 0, 2);  // reason 0x00 and no properties: omitted
  putU16(out, packet_id);
}

bool appendPublish(std::string& out, std::string_view topic, std::string_view payload, int qos,
                   bool retain, std::uint16_t packet_id) {
  if (topic.size() > 0xFFFF) return false;
  const std::size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + 1 + payload.size();
  if (remaining > kMaxVarInt) return false;
  putHeader(out, PacketType::kPublish,
            static_cast<std::uint8_t>(((qos & 0x03) << 1) | (retain ? 0x01 : 0)), remaining);
  putString(out, topic);
  if (qos > 0) putU16(out, packet_id);
  appendVarInt(out, 0);  // no properties
  out += payload;
  return true;
}

void appendPingreq(std::string& out) { putHeader(out, PacketType::kPingreq, 0, 0); }

void appendDisconnect(std::string& out, std::uint8_t reason_code) {
  if (reason_code == reason::kSuccess) {
    putHeader(out, PacketType::kDisconnect, 0, 0);
    return;
  }
  putHeader(out, PacketType::kDisconnect, 0, 1);
  putU8(out, reason_code);
}

}  // namespace gw::mqtt::codec
