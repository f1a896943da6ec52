// SenML JSON on simdjson's DOM parser: a pack is small (one CoAP message), and the DOM
// validates the whole document before any record is used, so a pack with garbage at the end
// is refused as a whole rather than half-ingested.
#include "protocols/payload/senml.h"

#include <simdjson.h>

#include <cmath>
#include <string>

namespace gw::payload {
namespace {

namespace dom = simdjson::dom;

// RFC 8428 4.5.4: values of bt + t below 2^28 s are relative to the receiver's "now".
constexpr double kRelativeLimit = 268435456.0;

bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 8428 4.5.1: the resolved name starts with a letter or digit and holds only letters,
// digits and "-:./_".
bool validName(std::string_view base, std::string_view name) {
  bool first = true;
  for (std::string_view part : {base, name}) {
    for (char c : part) {
      if (first) {
        if (!isAlnum(c)) return false;
        first = false;
      } else if (!isAlnum(c) && c != '-' && c != ':' && c != '.' && c != '/' && c != '_') {
        return false;
      }
    }
  }
  return true;
}

bool getNumber(dom::element e, double& out) {
  switch (e.type()) {
    case dom::element_type::DOUBLE:
      out = double(e);
      return true;
    case dom::element_type::INT64:
      out = static_cast<double>(int64_t(e));
      return true;
    case dom::element_type::UINT64:
      out = static_cast<double>(uint64_t(e));
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* toString(SenmlError e) {
  switch (e) {
    case SenmlError::kNone:
      return "ok";
    case SenmlError::kTooLarge:
      return "too_large";
    case SenmlError::kNotJson:
      return "not_json";
    case SenmlError::kNotSenml:
      return "not_senml";
    case SenmlError::kNotFinite:
      return "not_finite";
    case SenmlError::kNoFields:
      return "no_fields";
  }
  return "unknown";
}

struct SenmlDecoder::Impl {
  size_t max_payload;
  dom::parser parser;
};

SenmlDecoder::SenmlDecoder(size_t max_payload) : impl_(std::make_unique<Impl>()) {
  impl_->max_payload = max_payload;
}
SenmlDecoder::~SenmlDecoder() = default;
SenmlDecoder::SenmlDecoder(SenmlDecoder&&) noexcept = default;
SenmlDecoder& SenmlDecoder::operator=(SenmlDecoder&&) noexcept = default;

SenmlError SenmlDecoder::decode(std::string_view payload, std::vector<SenmlRecord>& out) {
  out.clear();
  if (payload.size() > impl_->max_payload) return SenmlError::kTooLarge;
  dom::element doc;
  if (auto err = impl_->parser.parse(payload.data(), payload.size(), true).get(doc)) {
    if (err == simdjson::NUMBER_ERROR) return SenmlError::kNotFinite;
    return SenmlError::kNotJson;
  }
  dom::array pack;
  if (doc.get_array().get(pack)) return SenmlError::kNotSenml;

  // Base fields in effect.
  std::string_view bn;
  double bt = 0, bv = 0;
  auto fail = [&out](SenmlError e) {
    out.clear();
    return e;
  };
  for (dom::element rec : pack) {
    dom::object obj;
    if (rec.get_object().get(obj)) return fail(SenmlError::kNotSenml);
    std::string_view n;
    double v = 0, t = 0, num = 0;
    bool has_v = false, has_vb = false, vb = false;
    for (auto [key, val] : obj) {
      if (key == "bn") {
        if (val.get_string().get(bn)) return fail(SenmlError::kNotSenml);
      } else if (key == "bt") {
        if (!getNumber(val, bt)) return fail(SenmlError::kNotSenml);
      } else if (key == "bv") {
        if (!getNumber(val, bv)) return fail(SenmlError::kNotSenml);
      } else if (key == "bver") {
        if (!getNumber(val, num) || num > 10) return fail(SenmlError::kNotSenml);
      } else if (key == "bs" || key == "s" || key == "ut") {
        if (!getNumber(val, num)) return fail(SenmlError::kNotSenml);
      } else if (key == "bu" || key == "u" || key == "vs" || key == "vd") {
        std::string_view s;
        if (val.get_string().get(s)) return fail(SenmlError::kNotSenml);
      } else if (key == "n") {
        if (val.get_string().get(n)) return fail(SenmlError::kNotSenml);
      } else if (key == "v") {
        if (!getNumber(val, v)) return fail(SenmlError::kNotSenml);
        has_v = true;
      } else if (key == "vb") {
        if (val.get_bool().get(vb)) return fail(SenmlError::kNotSenml);
        has_vb = true;
      } else if (key == "t") {
        if (!getNumber(val, t)) return fail(SenmlError::kNotSenml);
      } else if (!key.empty() && key.back() == '_') {
        return fail(SenmlError::kNotSenml);  // must-understand extension we do not know
      }
      // Other fields are extensions that may be ignored (RFC 8428 4.4).
    }
    if (!validName(bn, n)) return fail(SenmlError::kNotSenml);
    if (!has_v && !has_vb) continue;  // a string, data or sum record: no reading
    SenmlRecord r;
    r.base_name = bn;
    r.name = n;
    r.value = has_v ? bv + v : (vb ? 1.0 : 0.0);
    if (!std::isfinite(r.value)) return fail(SenmlError::kNotFinite);
    const double time = bt + t;
    if (!std::isfinite(time) || std::fabs(time) > 9.2e9) return fail(SenmlError::kNotSenml);
    if (time >= kRelativeLimit) {
      r.time_kind = SenmlRecord::Time::kAbsolute;
    } else if (time != 0) {
      r.time_kind = SenmlRecord::Time::kRelative;
    }
    const double whole = std::floor(time);
    r.time = static_cast<Nanos>(whole) * kNanosPerSecond +
             static_cast<Nanos>(std::llround((time - whole) * 1e9));
    out.push_back(r);
  }
  if (out.empty()) return SenmlError::kNoFields;
  return SenmlError::kNone;
}

}  // namespace gw::payload
