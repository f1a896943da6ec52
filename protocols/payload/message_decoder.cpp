#include "protocols/payload/message_decoder.h"

namespace gw::payload {
namespace {

std::string_view stripBase(std::string_view bn) {
  while (!bn.empty() && (bn.back() == ':' || bn.back() == '/' || bn.back() == '.'))
    bn.remove_suffix(1);
  return bn;
}

// A control character (C0 or DEL) in a device, metric or tag name: refused as "bad_name" (issue
// 17). Kafka's JSON escapes a newline while the line protocol cannot carry one (InfluxDB and
// VictoriaMetrics turn it into a space), so one name would become two series, one per sink.
bool hasControl(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  return false;
}

bool badNames(const Series& s) {
  if (hasControl(s.device) || hasControl(s.metric)) return true;
  for (const auto& [k, v] : s.tags)
    if (hasControl(k) || hasControl(v)) return true;
  return false;
}

}  // namespace

MessageDecoder::MessageDecoder(const PayloadOptions& options)
    : options_(options), decoder_(options.decoder), senml_(options.decoder.max_payload) {}

const char* MessageDecoder::decode(std::string_view payload, const Series& series) {
  if (badNames(series)) return "bad_name";  // from the topic or path template
  if (!options_.senml) {
    const auto err = decoder_.decode(payload, decoded_);
    if (err != DecodeError::kNone) return toString(err);
    for (const auto& v : decoded_.values)
      if (hasControl(v.metric)) return "bad_name";
    return nullptr;
  }
  const auto err = senml_.decode(payload, records_);
  if (err != SenmlError::kNone) return toString(err);
  for (const auto& r : records_)
    if (hasControl(r.base_name) || hasControl(r.name)) return "bad_name";
  // Every record must be nameable before any goes in.
  for (const auto& r : records_) {
    if (series.device.empty()) {
      if (r.name.empty() || stripBase(r.base_name).empty()) return "senml_no_device";
    } else if (r.base_name.empty() && r.name.empty() && series.metric.empty()) {
      return "senml_no_name";
    }
  }
  return nullptr;
}

// With a device in the series (from the template or the observe entry) the metric is the
// resolved name (bn + n); without one, bn names the device and n the metric.
void MessageDecoder::nameRecord(const SenmlRecord& r, Series& series, bool device_from_base,
                                Nanos receive_time) {
  single_.device_time.reset();
  single_.bad_timestamp = false;
  single_.values.assign(1, DecodedValue{{}, r.value});
  if (device_from_base) {  // decode() made sure both are there
    series.device.assign(stripBase(r.base_name));
    series.metric.assign(r.name);
  } else {
    series.metric.assign(r.base_name);
    series.metric.append(r.name);
    if (series.metric.empty()) series.metric = template_metric_;
  }
  if (r.time_kind == SenmlRecord::Time::kAbsolute)
    single_.device_time = r.time;
  else if (r.time_kind == SenmlRecord::Time::kRelative) {
    // RFC 8428 allows any negative offset; one reaching before 1970 is a bad timestamp, as
    // for the other formats (issue 17). The value is kept.
    if (receive_time + r.time >= 0) {
      single_.device_time = receive_time + r.time;
    } else {
      single_.bad_timestamp = true;
    }
  }
}

}  // namespace gw::payload
