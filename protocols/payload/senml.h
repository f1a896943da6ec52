// SenML JSON (RFC 8428) decoder: what many CoAP devices send (content format 110,
// application/senml+json). A pack is a JSON array of records; base fields (bn, bt, bv, bu)
// apply to the records after them until changed.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"

namespace gw::payload {

/// Why a SenML pack was refused; each is counted under its name.
enum class SenmlError {
  kNone,
  kTooLarge,   ///< "too_large"
  kNotJson,    ///< "not_json"
  kNotSenml,   ///< "not_senml": not an array of objects, a field of the wrong type, a bad name,
               ///< an unknown must-understand field (name ending in '_'), bver above 10
  kNotFinite,  ///< "not_finite": a number beyond a double's range
  kNoFields,   ///< "no_fields": no record with a numeric value (v, or vb as 1/0)
};
const char* toString(SenmlError e);

/// One resolved record with a numeric value. Records holding only a string (vs), data (vd) or
/// a sum (s) carry no reading and are skipped.
struct SenmlRecord {
  enum class Time {
    kNone,      ///< no time, or a resolved time of 0: "now" (RFC 8428 4.5.3)
    kAbsolute,  ///< bt + t >= 2^28 s: seconds since the Unix epoch
    kRelative,  ///< bt + t < 2^28 s: relative to the receiver's clock (negative is the past)
  };
  std::string_view base_name;  ///< bn in effect (may be empty)
  std::string_view name;       ///< n (may be empty); the RFC's resolved name is base_name + name
  double value = 0;            ///< bv + v, or 1/0 for vb
  Time time_kind = Time::kNone;
  Nanos time = 0;  ///< ns since the epoch for kAbsolute, an offset in ns for kRelative
};

/// Not thread-safe: one decoder per thread (it reuses its parser and buffers).
class SenmlDecoder {
 public:
  explicit SenmlDecoder(size_t max_payload = 64 * 1024);
  ~SenmlDecoder();
  SenmlDecoder(SenmlDecoder&&) noexcept;
  SenmlDecoder& operator=(SenmlDecoder&&) noexcept;

  /// Decodes one pack into `out` (cleared first; empty on error). Views in `out` stay valid
  /// until the next decode() on this decoder. Resolved names are checked against RFC 8428's
  /// rule (first character a letter or digit, then letters, digits and "-:./_").
  SenmlError decode(std::string_view payload, std::vector<SenmlRecord>& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::payload
