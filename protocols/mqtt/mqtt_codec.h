// MQTT v5 packet codec (OASIS MQTT 5.0), private to gw_mqtt: the subset a QoS 0/1 subscriber
// needs. Decoders work on views into the caller's read buffer and never allocate (except to
// grow the caller's reused user-property vector); encoders append to the caller's buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocols/mqtt/mqtt_client.h"

namespace gw::mqtt::codec {

enum class PacketType : std::uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,
};
std::string_view packetTypeName(PacketType type);

/// Reason codes this client sends (MQTT 5.0 section 2.4).
namespace reason {
constexpr std::uint8_t kSuccess = 0x00;
constexpr std::uint8_t kMalformedPacket = 0x81;
constexpr std::uint8_t kProtocolError = 0x82;
constexpr std::uint8_t kReceiveMaximumExceeded = 0x93;
constexpr std::uint8_t kTopicAliasInvalid = 0x94;
constexpr std::uint8_t kPacketTooLarge = 0x95;
constexpr std::uint8_t kQosNotSupported = 0x9B;
}  // namespace reason

/// Readable text for a CONNACK / SUBACK / DISCONNECT reason code, e.g. 0x86 → "bad user name
/// or password". 0x00..0x02 read as SUBACK grants except 0x00, which is "success".
std::string_view reasonText(std::uint8_t code);

/// Property identifiers (MQTT 5.0 section 2.2.2.2).
namespace prop {
constexpr std::uint8_t kPayloadFormatIndicator = 0x01;
constexpr std::uint8_t kMessageExpiryInterval = 0x02;
constexpr std::uint8_t kContentType = 0x03;
constexpr std::uint8_t kResponseTopic = 0x08;
constexpr std::uint8_t kCorrelationData = 0x09;
constexpr std::uint8_t kSubscriptionIdentifier = 0x0B;
constexpr std::uint8_t kSessionExpiryInterval = 0x11;
constexpr std::uint8_t kAssignedClientIdentifier = 0x12;
constexpr std::uint8_t kServerKeepAlive = 0x13;
constexpr std::uint8_t kAuthenticationMethod = 0x15;
constexpr std::uint8_t kAuthenticationData = 0x16;
constexpr std::uint8_t kRequestProblemInformation = 0x17;
constexpr std::uint8_t kWillDelayInterval = 0x18;
constexpr std::uint8_t kRequestResponseInformation = 0x19;
constexpr std::uint8_t kResponseInformation = 0x1A;
constexpr std::uint8_t kServerReference = 0x1C;
constexpr std::uint8_t kReasonString = 0x1F;
constexpr std::uint8_t kReceiveMaximum = 0x21;
constexpr std::uint8_t kTopicAliasMaximum = 0x22;
constexpr std::uint8_t kTopicAlias = 0x23;
constexpr std::uint8_t kMaximumQos = 0x24;
constexpr std::uint8_t kRetainAvailable = 0x25;
constexpr std::uint8_t kUserProperty = 0x26;
constexpr std::uint8_t kMaximumPacketSize = 0x27;
constexpr std::uint8_t kWildcardSubscriptionAvailable = 0x28;
constexpr std::uint8_t kSubscriptionIdentifierAvailable = 0x29;
constexpr std::uint8_t kSharedSubscriptionAvailable = 0x2A;
}  // namespace prop

enum class PropertyType {
  kByte,
  kTwoByte,
  kFourByte,
  kVarInt,
  kString,
  kBinary,
  kStringPair,
  kUnknown
};
PropertyType propertyType(std::uint32_t id);

// ---- variable byte integers and the fixed header ------------------------------------------

constexpr std::uint32_t kMaxVarInt = 268'435'455;

enum class Decode { kOk, kNeedMore, kMalformed };

/// Bytes needed to encode v (1..4); v must be <= kMaxVarInt.
std::size_t varIntSize(std::uint32_t v);
/// Appends the variable byte integer encoding of v; v must be <= kMaxVarInt.
void appendVarInt(std::string& out, std::uint32_t v);
/// Decodes a variable byte integer at the start of `in`. kNeedMore when `in` ends inside it;
/// kMalformed when it runs past four bytes.
Decode decodeVarInt(std::string_view in, std::uint32_t& value, std::size_t& used);

struct FixedHeader {
  PacketType type = PacketType::kConnect;
  std::uint8_t flags = 0;
  std::uint32_t remaining_length = 0;
  std::size_t header_size = 0;  ///< type byte + remaining-length bytes
  std::size_t packetSize() const { return header_size + remaining_length; }
};
/// Decodes the fixed header at the start of `in` (the packet body need not be there yet).
Decode decodeFixedHeader(std::string_view in, FixedHeader& out);

// ---- reading packet bodies -----------------------------------------------------------------

/// Bounds-checked cursor over a packet body. Every getter returns false (and leaves the
/// reader failed) when the data runs out.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool u8(std::uint8_t& v);
  bool u16(std::uint16_t& v);
  bool u32(std::uint32_t& v);
  bool varInt(std::uint32_t& v);
  /// Two-byte length prefixed UTF-8 string or binary data.
  bool lengthPrefixed(std::string_view& v);
  /// A property block: variable byte integer length, then that many bytes.
  bool properties(std::string_view& block);
  std::string_view rest() const { return data_.substr(pos_); }
  std::size_t remaining() const { return data_.size() - pos_; }

 private:
  bool take(std::size_t n, std::string_view& v);
  std::string_view data_;
  std::size_t pos_ = 0;
};

struct Property {
  std::uint32_t id = 0;
  std::uint32_t number = 0;  ///< byte, two-byte, four-byte and varint properties
  std::string_view name;     ///< user property name
  std::string_view value;    ///< string / binary value; user property value
};
/// Reads one property; false on an unknown identifier or truncated data.
bool readProperty(Reader& r, Property& p);

/// Calls f(const Property&) for each property of a block; f returns false to reject.
/// Returns false when the block is malformed or f rejected a property.
template <typename F>
bool forEachProperty(std::string_view block, F&& f) {
  Reader r(block);
  while (r.remaining() > 0) {
    Property p;
    if (!readProperty(r, p) || !f(p)) return false;
  }
  return true;
}

using UserProperties = std::vector<std::pair<std::string_view, std::string_view>>;

struct Connack {
  bool session_present = false;
  std::uint8_t reason = 0;
  bool has_session_expiry = false;
  std::uint32_t session_expiry = 0;
  bool has_server_keepalive = false;
  std::uint16_t server_keepalive = 0;
  bool has_assigned_client_id = false;
  std::string_view assigned_client_id;
  std::uint32_t maximum_packet_size = 0;  ///< 0: no limit given
  std::uint16_t receive_maximum = 65535;
  std::uint8_t maximum_qos = 2;
  bool wildcard_subscription_available = true;
  std::string_view reason_string;
  std::string_view server_reference;
};
bool parseConnack(std::string_view body, Connack& out);

struct Publish {
  std::string_view topic;
  std::string_view payload;
  std::uint16_t packet_id = 0;
  int qos = 0;
  bool dup = false;
  bool retain = false;
  bool has_topic_alias = false;
};
/// Parses a PUBLISH; `user_properties` is cleared and filled in packet order (views into
/// `body`). Rejects QoS 3, DUP on QoS 0 and packet identifier 0 on QoS > 0.
bool parsePublish(std::uint8_t flags, std::string_view body, Publish& out,
                  UserProperties& user_properties);

struct Suback {
  std::uint16_t packet_id = 0;
  std::string_view reason_codes;  ///< one byte per filter, in SUBSCRIBE order
  std::string_view reason_string;
};
bool parseSuback(std::string_view body, Suback& out);

struct Disconnect {
  std::uint8_t reason = 0;
  std::string_view reason_string;
  std::string_view server_reference;
};
bool parseDisconnect(std::string_view body, Disconnect& out);

// ---- writing packets -----------------------------------------------------------------------

struct ConnectParams {
  std::string_view client_id;
  std::string_view username;  ///< empty: no user name flag
  std::string_view password;  ///< empty: no password flag
  bool clean_start = false;
  std::uint16_t keepalive_s = 0;
  std::uint32_t session_expiry_s = 0;
  std::uint16_t receive_maximum = 65535;
  std::uint32_t maximum_packet_size = 0;  ///< 0: not sent (no limit)
  const Will* will = nullptr;             ///< the Will message, if any
};
/// Appends a CONNECT packet; false when a string is longer than 65535 bytes.
bool appendConnect(std::string& out, const ConnectParams& p);

/// Size in bytes of a SUBSCRIBE packet carrying `filters`.
std::size_t subscribePacketSize(std::span<const SubscriptionFilter> filters);
/// Appends one SUBSCRIBE for all `filters` (Retain Handling 1: retained messages only for a
/// subscription that did not exist, so a re-subscribe on reconnect does not replay them).
/// False when a filter is longer than 65535 bytes or the packet would be too large.
bool appendSubscribe(std::string& out, std::uint16_t packet_id,
                     std::span<const SubscriptionFilter> filters);
void appendPuback(std::string& out, std::uint16_t packet_id);
/// Appends a PUBLISH (no properties); `packet_id` is used for QoS 1 only. False when the topic
/// is longer than 65535 bytes or the packet would be too large.
bool appendPublish(std::string& out, std::string_view topic, std::string_view payload, int qos,
                   bool retain, std::uint16_t packet_id);
void appendPingreq(std::string& out);
void appendDisconnect(std::string& out, std::uint8_t reason_code);

}  // namespace gw::mqtt::codec
