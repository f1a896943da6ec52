// Payload decoders shared by every source (MQTT, CoAP): JSON, plain value, fields.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace gw::payload {

enum class Format {
  kJson,    ///< one value at `value_field` (a dotted path: "value", "data.temp")
  kValue,   ///< the payload is the number itself ("21.5", whitespace allowed)
  kFields,  ///< every numeric top-level field is a metric named after the field
};

enum class TimeUnit { kSeconds, kMillis, kMicros, kNanos, kRfc3339 };

struct DecoderOptions {
  Format format = Format::kJson;
  std::string value_field = "value";
  std::string timestamp_field;  ///< empty: payloads carry no device time
  TimeUnit timestamp_unit = TimeUnit::kMillis;
  size_t max_payload = 64 * 1024;
};

/// Why a payload was refused; each is counted under its name.
enum class DecodeError {
  kNone,
  kTooLarge,      ///< "too_large"
  kNotJson,       ///< "not_json"
  kNotNumber,     ///< "not_number": the value is missing or not a number
  kNotFinite,     ///< "not_finite": NaN or infinity
  kNoFields,      ///< "no_fields": format fields and no numeric field
};
const char* toString(DecodeError e);

struct DecodedValue {
  std::string_view metric;  ///< empty for kJson/kValue (the metric comes from the template)
  double value = 0;
};

struct Decoded {
  std::optional<Nanos> device_time;
  bool bad_timestamp = false;  ///< the timestamp field was present but unreadable
  std::vector<DecodedValue> values;
};

/// Not thread-safe: one decoder per thread (it reuses its parser and buffers so decoding
/// does not allocate in the steady state).
class Decoder {
 public:
  explicit Decoder(DecoderOptions options);
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  /// Decodes one payload into `out` (cleared first). Views in `out` stay valid until the
  /// next decode() on this decoder.
  DecodeError decode(std::string_view payload, Decoded& out);
  const DecoderOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Parses the `timestamp_unit` config value: s | ms | us | ns | rfc3339.
std::optional<TimeUnit> parseTimeUnit(std::string_view s);
/// Parses the `format` config value: json | value | fields.
std::optional<Format> parseFormat(std::string_view s);

}  // namespace gw::payload
