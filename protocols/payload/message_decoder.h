// One decoder per route of any source (MQTT subscription, CoAP resource or observation): the
// shared single-message formats (json, value, fields) or SenML packs (RFC 8428), which name
// their own records and can carry several devices. A stateful decoder (Sparkplug B) takes the
// same place.
#pragma once

#include <string_view>
#include <vector>

#include "core/reading.h"
#include "protocols/payload/decoder.h"
#include "protocols/payload/senml.h"

namespace gw::payload {

/// How a payload is read: the shared decoders (value, json, fields) or SenML JSON.
struct PayloadOptions {
  bool senml = false;      ///< format = "senml"; `decoder` then only gives max_payload
  DecoderOptions decoder;  ///< format, value/timestamp fields, max_payload
};

/// Not thread-safe: one per route, used on the event loop.
class MessageDecoder {
 public:
  explicit MessageDecoder(const PayloadOptions& options);

  /// Decodes `payload` for a message whose template captured `series` (device and tags; the
  /// metric for single-value formats; SenML may leave the device to the pack's base name).
  /// Returns the bad-input reason ("not_json", "senml_no_device", …) or nullptr; a SenML pack
  /// is taken whole or refused whole.
  const char* decode(std::string_view payload, const Series& series);
  /// The last decode() found a timestamp it could not read (the values are kept).
  bool badTimestamp() const { return !options_.senml && decoded_.bad_timestamp; }

  /// Hands what decode() produced to `fn(Series&, const Decoded&)`: one call for the shared
  /// formats, one per record for SenML (each with its own name and time; relative SenML times
  /// count from `receive_time`). `series` is the template's captures, changed in between.
  template <typename F>
  void emit(Series& series, Nanos receive_time, F&& fn) {
    if (!options_.senml) return fn(series, decoded_);
    const bool device_from_base = series.device.empty();
    template_metric_ = series.metric;
    for (const auto& r : records_) {
      nameRecord(r, series, device_from_base, receive_time);
      fn(series, single_);
    }
    if (device_from_base) series.device.clear();
  }

  const PayloadOptions& options() const { return options_; }

 private:
  void nameRecord(const SenmlRecord& r, Series& series, bool device_from_base, Nanos receive_time);

  PayloadOptions options_;
  Decoder decoder_;
  SenmlDecoder senml_;
  Decoded decoded_;
  std::vector<SenmlRecord> records_;
  Decoded single_;
  std::string template_metric_;
};

}  // namespace gw::payload
