// Payload decoders shared by every source (MQTT, CoAP): JSON, plain value, fields.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/time.h"

namespace gw::payload {

/// JSON payloads are validated in full (trailing content, bad literals, invalid UTF-8 and nesting
/// deeper than 64 levels are not_json), even when the value comes before the fault.
enum class Format {
  /// One value at `value_field`, a dotted path through objects ("value", "data.temp"). The
  /// value is a JSON number or a string holding one ("21.5"); booleans, null, objects and
  /// arrays are not_number. With duplicate keys the last one wins.
  kJson,
  /// The payload is the number itself ("21.5"; surrounding whitespace and newlines, a leading
  /// '+' and exponents allowed). "NaN"/"inf" are not_finite; a quoted "21.5" is not_number.
  /// Carries no device time: `timestamp_field` is ignored.
  kValue,
  /// Every top-level field holding a JSON number is a metric named after the field, in
  /// document order (duplicate keys give two values). Numeric strings, booleans, null, nested
  /// objects and arrays are skipped, as is the timestamp field and the empty key. A number
  /// beyond a double's range is skipped too; when that leaves nothing the error is not_finite.
  kFields,
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
  kTooLarge,   ///< "too_large"
  kNotJson,    ///< "not_json"
  kNotNumber,  ///< "not_number": the value is missing or not a number
  kNotFinite,  ///< "not_finite": NaN or infinity
  kNoFields,   ///< "no_fields": format fields and no numeric field
};
const char* toString(DecodeError e);

using DecodedValue = gw::DecodedValue;
using Decoded = gw::Decoded;

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
