// Payload decoders on simdjson On-Demand. One parser and one padded buffer per decoder, both
// reused, so the steady state does not allocate. The whole document is walked once, in document
// order: On-Demand only validates what it visits, and a payload that is not JSON must be refused
// as not_json even when the value we want comes before the garbage.
#include "protocols/payload/decoder.h"

#include <simdjson.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>

namespace gw::payload {
namespace {

namespace od = simdjson::ondemand;

// Deeper nesting is refused as not_json: no sensor payload needs it, and it bounds recursion.
constexpr int kMaxDepth = 64;

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 8259 number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool isJsonNumber(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n || !isDigit(s[i])) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (i < n && isDigit(s[i])) ++i;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (i >= n || !isDigit(s[i])) return false;
    while (i < n && isDigit(s[i])) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (i >= n || !isDigit(s[i])) return false;
    while (i < n && isDigit(s[i])) ++i;
  }
  return i == n;
}

// [0-9]+
bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isDigit);
}

enum class Num { kOk, kNotNumber, kNotFinite };

// For a decimal that std::from_chars reported out of range: true when its magnitude is too
// large (overflow), false when too small (underflow). `s` has the from_chars grammar.
bool decimalOverflows(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  // Decimal exponent of the first significant digit, relative to the decimal point.
  long long mag = 0;
  bool seen_sig = false, after_point = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      after_point = true;
    } else if (isDigit(c)) {
      if (!seen_sig && c != '0') seen_sig = true;
      if (!after_point && seen_sig) ++mag;
      if (after_point && !seen_sig) --mag;
    } else {
      break;
    }
  }
  long long exp = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    for (; i < s.size() && isDigit(s[i]); ++i) exp = std::min(exp * 10 + (s[i] - '0'), 1'000'000LL);
    if (neg) exp = -exp;
  }
  return mag + exp > 0;
}

// A number written as text: the `value` format payload, or a JSON string holding a number.
// Surrounding whitespace and one leading '+' are accepted; "nan"/"inf"/"infinity" (any case)
// are numbers that are not finite; hex and trailing garbage are not numbers. Locale-independent.
Num parseNumberText(std::string_view s, double& out) {
  s = trim(s);
  if (s.size() >= 2 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  if (s.empty()) return Num::kNotNumber;
  const char* end = s.data() + s.size();
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), end, v, std::chars_format::general);
  if (p != end) return Num::kNotNumber;
  if (ec == std::errc::result_out_of_range) {
    if (decimalOverflows(s)) return Num::kNotFinite;
    out = s[0] == '-' ? -0.0 : 0.0;  // underflow rounds to zero, as JSON numbers do
    return Num::kOk;
  }
  if (ec != std::errc()) return Num::kNotNumber;
  if (!std::isfinite(v)) return Num::kNotFinite;
  out = v;
  return Num::kOk;
}

Nanos unitNanos(TimeUnit u) {
  switch (u) {
    case TimeUnit::kSeconds:
      return kNanosPerSecond;
    case TimeUnit::kMillis:
      return kNanosPerMilli;
    case TimeUnit::kMicros:
      return kNanosPerMicro;
    case TimeUnit::kNanos:
    case TimeUnit::kRfc3339:
      return 1;
  }
  return 1;
}

// A numeric timestamp (a JSON number token or the text of a numeric string) in `unit`.
// Plain decimals convert exactly, rounded half away from zero to the ns (ns since the epoch need
// all 64 bits, beyond a double's 53); exponent forms go through a double.
std::optional<Nanos> numericTimestamp(std::string_view text, TimeUnit unit) {
  text = trim(text);
  const Nanos mult = unitNanos(unit);
  const bool negative = !text.empty() && text.front() == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  const size_t point = digits.find('.');
  const std::string_view int_part = digits.substr(0, point);
  const std::string_view frac_part =
      point == std::string_view::npos ? std::string_view{} : digits.substr(point + 1);
  if (allDigits(int_part) && (point == std::string_view::npos || allDigits(frac_part))) {
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(int_part.data(), int_part.data() + int_part.size(), v);
    if (ec != std::errc() || p != int_part.data() + int_part.size()) return std::nullopt;
    Nanos frac = 0, scale = mult;
    size_t i = 0;
    for (; i < frac_part.size() && scale >= 10; ++i) {
      scale /= 10;
      frac += (frac_part[i] - '0') * scale;
    }
    if (i < frac_part.size() && frac_part[i] >= '5') ++frac;
    Nanos ns = 0;
    if (__builtin_mul_overflow(v, mult, &ns) || __builtin_add_overflow(ns, frac, &ns))
      return std::nullopt;
    return negative ? -ns : ns;  // -ns cannot overflow: ns >= 0
  }
  double v = 0;
  if (parseNumberText(text, v) != Num::kOk) return std::nullopt;
  const double ns = v * static_cast<double>(mult);
  // 2^63 is exactly representable; anything at or beyond it does not fit.
  if (!(ns > -9.2233720368547758e18 && ns < 9.2233720368547758e18)) return std::nullopt;
  return static_cast<Nanos>(std::llround(ns));
}

std::optional<Nanos> rfc3339Timestamp(std::string_view s) {
  // parseRfc3339 computes in int64 ns; keep to the years that fit (1677-09-21 .. 2262-04-11)
  // so an absurd year is a bad timestamp rather than an overflow.
  if (s.size() < 4 || !std::all_of(s.begin(), s.begin() + 4, isDigit)) return std::nullopt;
  const int year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  if (year < 1678 || year > 2261) return std::nullopt;
  return parseRfc3339(s);
}

std::vector<std::string> splitPath(std::string_view path) {
  std::vector<std::string> out;
  if (path.empty()) return out;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    out.emplace_back(path.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

}  // namespace

struct Decoder::Impl {
  explicit Impl(DecoderOptions o)
      : options(std::move(o)),
        value_path(options.format == Format::kJson ? splitPath(options.value_field)
                                                   : std::vector<std::string>{}),
        ts_path(options.format == Format::kValue ? std::vector<std::string>{}
                                                 : splitPath(options.timestamp_field)) {}

  DecodeError decode(std::string_view payload, Decoded& out);
  DecodeError decodeValue(std::string_view payload, Decoded& out);
  DecodeError decodeJson(std::string_view payload, Decoded& out);

  // The walk: visits every value once, in document order. `vm`/`tm` is how many segments of
  // the value/timestamp path the current value's ancestors matched (-1: off the path).
  // Returns false when the document is not valid JSON.
  // `key` is set for the fields of objects (nullptr for array elements and the root).
  bool visit(od::value v, int depth, int vm, int tm, const std::string_view* key, Decoded& out);
  bool visitScalar(od::value& v, od::json_type type, bool value_leaf, bool ts_leaf, bool field,
                   std::string_view key, Decoded& out);
  bool atEnd(od::document& doc) {
    return doc.current_location().error() == simdjson::OUT_OF_BOUNDS;
  }
  void setTimestamp(std::optional<Nanos> t, Decoded& out) {
    // No device reports from before 1970: a negative time is a broken clock or a signed field
    // read wrongly, not a date to store (issue 17).
    if (t && *t < 0) t.reset();
    out.device_time = t;
    out.bad_timestamp = !t.has_value();
  }

  DecoderOptions options;
  std::vector<std::string> value_path;  ///< empty unless format json
  std::vector<std::string> ts_path;     ///< empty: no timestamp
  od::parser parser;
  std::unique_ptr<char[]> buf;  ///< payload copy followed by SIMDJSON_PADDING zero bytes
  size_t buf_capacity = 0;

  // Per-decode state.
  Num value_state = Num::kNotNumber;
  bool value_found = false;
  double value = 0;
  bool field_not_finite = false;  ///< format fields: a numeric field overflowed
};

bool Decoder::Impl::visitScalar(od::value& v, od::json_type type, bool value_leaf, bool ts_leaf,
                                bool field, std::string_view key, Decoded& out) {
  switch (type) {
    case od::json_type::number: {
      const std::string_view raw = trim(v.raw_json_token());
      double d = 0;
      Num state = Num::kOk;
      if (v.get_double().get(d) != simdjson::SUCCESS) {
        // simdjson refuses numbers beyond a double's range; they are still valid JSON. The
        // unconsumed token is skipped by the enclosing object or array iteration.
        if (!isJsonNumber(raw)) return false;
        state = Num::kNotFinite;
      }
      if (value_leaf) {
        value_found = true;
        value_state = state;
        value = d;
      }
      if (ts_leaf) {
        setTimestamp(options.timestamp_unit == TimeUnit::kRfc3339
                         ? std::nullopt
                         : numericTimestamp(raw, options.timestamp_unit),
                     out);
      }
      if (field) {
        if (state == Num::kOk) {
          out.values.push_back(DecodedValue{key, d});
        } else if (state == Num::kNotFinite) {
          field_not_finite = true;
        }
      }
      return true;
    }
    case od::json_type::string: {
      std::string_view s;
      if (v.get_string().get(s) != simdjson::SUCCESS) return false;
      if (value_leaf) {
        value_found = true;
        double d = 0;
        value_state = parseNumberText(s, d);
        value = d;
      }
      if (ts_leaf) {
        setTimestamp(options.timestamp_unit == TimeUnit::kRfc3339
                         ? rfc3339Timestamp(s)
                         : numericTimestamp(s, options.timestamp_unit),
                     out);
      }
      return true;  // format fields: strings are not metrics, even numeric ones
    }
    case od::json_type::boolean: {
      bool b;
      if (v.get_bool().get(b) != simdjson::SUCCESS) return false;
      if (value_leaf) {
        value_found = true;
        value_state = Num::kNotNumber;
      }
      if (ts_leaf) setTimestamp(std::nullopt, out);
      return true;
    }
    case od::json_type::null: {
      bool is_null = false;
      if (v.is_null().get(is_null) != simdjson::SUCCESS || !is_null) return false;
      if (value_leaf) {
        value_found = true;
        value_state = Num::kNotNumber;
      }
      // "ts": null is a device saying it has no time: the same as no timestamp field.
      if (ts_leaf) {
        out.device_time.reset();
        out.bad_timestamp = false;
      }
      return true;
    }
    default:
      return false;
  }
}

bool Decoder::Impl::visit(od::value v, int depth, int vm, int tm, const std::string_view* key,
                          Decoded& out) {
  const bool value_leaf = vm >= 0 && static_cast<size_t>(vm) == value_path.size();
  const bool ts_leaf = tm >= 0 && static_cast<size_t>(tm) == ts_path.size();
  od::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) return false;
  switch (type) {
    case od::json_type::object: {
      if (depth >= kMaxDepth) return false;
      if (value_leaf) {
        value_found = true;
        value_state = Num::kNotNumber;
      }
      if (ts_leaf) setTimestamp(std::nullopt, out);
      od::object obj;
      if (v.get_object().get(obj) != simdjson::SUCCESS) return false;
      for (auto field : obj) {
        std::string_view k;
        if (field.unescaped_key().get(k) != simdjson::SUCCESS) return false;
        const int cvm = vm >= 0 && static_cast<size_t>(vm) < value_path.size() &&
                                k == value_path[static_cast<size_t>(vm)]
                            ? vm + 1
                            : -1;
        const int ctm = tm >= 0 && static_cast<size_t>(tm) < ts_path.size() &&
                                k == ts_path[static_cast<size_t>(tm)]
                            ? tm + 1
                            : -1;
        od::value child;
        if (field.value().get(child) != simdjson::SUCCESS) return false;
        if (!visit(child, depth + 1, cvm, ctm, &k, out)) return false;
      }
      return true;
    }
    case od::json_type::array: {
      if (depth >= kMaxDepth) return false;
      if (value_leaf) {
        value_found = true;
        value_state = Num::kNotNumber;
      }
      if (ts_leaf) setTimestamp(std::nullopt, out);
      od::array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS) return false;
      for (auto element : arr) {
        od::value child;
        if (element.get(child) != simdjson::SUCCESS) return false;
        if (!visit(child, depth + 1, -1, -1, nullptr, out)) return false;
      }
      return true;
    }
    default: {
      // Fields of the root object are at depth 1; the timestamp and "" are never metrics.
      const bool field = options.format == Format::kFields && depth == 1 && key != nullptr &&
                         !key->empty() && !ts_leaf;
      return visitScalar(v, type, value_leaf, ts_leaf, field, field ? *key : std::string_view{},
                         out);
    }
  }
}

DecodeError Decoder::Impl::decodeValue(std::string_view payload, Decoded& out) {
  double d = 0;
  switch (parseNumberText(payload, d)) {
    case Num::kOk:
      out.values.push_back(DecodedValue{{}, d});
      return DecodeError::kNone;
    case Num::kNotFinite:
      return DecodeError::kNotFinite;
    case Num::kNotNumber:
      break;
  }
  return DecodeError::kNotNumber;
}

DecodeError Decoder::Impl::decodeJson(std::string_view payload, Decoded& out) {
  const size_t needed = payload.size() + simdjson::SIMDJSON_PADDING;
  if (needed > buf_capacity) {
    buf_capacity = std::max(needed, buf_capacity * 2);
    buf = std::make_unique<char[]>(buf_capacity);
  }
  std::memcpy(buf.get(), payload.data(), payload.size());
  std::memset(buf.get() + payload.size(), 0, simdjson::SIMDJSON_PADDING);

  od::document doc;
  if (parser.iterate(buf.get(), payload.size(), buf_capacity).get(doc) != simdjson::SUCCESS)
    return DecodeError::kNotJson;
  od::json_type type;
  if (doc.type().get(type) != simdjson::SUCCESS) return DecodeError::kNotJson;

  const DecodeError missing =
      options.format == Format::kFields ? DecodeError::kNoFields : DecodeError::kNotNumber;
  if (type != od::json_type::object && type != od::json_type::array) {
    // A scalar document is valid JSON without any field: validate it, then refuse it.
    simdjson::error_code e = simdjson::SUCCESS;
    switch (type) {
      case od::json_type::number: {
        const std::string_view raw = trim(doc.raw_json_token().value_unsafe());
        double d;
        e = doc.get_double().get(d);
        // Out of a double's range but valid JSON, and nothing after it.
        const std::string_view whole = trim(std::string_view(buf.get(), payload.size()));
        if (e == simdjson::NUMBER_ERROR && isJsonNumber(raw) &&
            raw.data() + raw.size() == whole.data() + whole.size())
          return missing;
        break;
      }
      case od::json_type::string: {
        std::string_view s;
        e = doc.get_string().get(s);
        break;
      }
      case od::json_type::boolean: {
        bool b;
        e = doc.get_bool().get(b);
        break;
      }
      case od::json_type::null: {
        bool is_null = false;
        e = doc.is_null().get(is_null);
        if (!e && !is_null) e = simdjson::INCORRECT_TYPE;
        break;
      }
      default:
        e = simdjson::TAPE_ERROR;
    }
    if (e != simdjson::SUCCESS || !atEnd(doc)) return DecodeError::kNotJson;
    return missing;
  }

  od::value root;
  if (doc.get_value().get(root) != simdjson::SUCCESS) return DecodeError::kNotJson;
  value_state = Num::kNotNumber;
  value_found = false;
  value = 0;
  field_not_finite = false;
  const int vm = value_path.empty() ? -1 : 0;
  const int tm = ts_path.empty() ? -1 : 0;
  if (!visit(root, 0, vm, tm, nullptr, out) || !atEnd(doc)) {
    out.values.clear();
    return DecodeError::kNotJson;
  }

  if (options.format == Format::kFields) {
    if (out.values.empty())
      return field_not_finite ? DecodeError::kNotFinite : DecodeError::kNoFields;
    return DecodeError::kNone;
  }
  if (!value_found || value_state == Num::kNotNumber) return DecodeError::kNotNumber;
  if (value_state == Num::kNotFinite) return DecodeError::kNotFinite;
  out.values.push_back(DecodedValue{{}, value});
  return DecodeError::kNone;
}

DecodeError Decoder::Impl::decode(std::string_view payload, Decoded& out) {
  out.device_time.reset();
  out.bad_timestamp = false;
  out.values.clear();
  if (payload.size() > options.max_payload) return DecodeError::kTooLarge;
  const DecodeError e =
      options.format == Format::kValue ? decodeValue(payload, out) : decodeJson(payload, out);
  if (e != DecodeError::kNone) {
    // A refused payload carries nothing: callers count it, they do not use it.
    out.device_time.reset();
    out.bad_timestamp = false;
    out.values.clear();
  }
  return e;
}

Decoder::Decoder(DecoderOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

DecodeError Decoder::decode(std::string_view payload, Decoded& out) {
  return impl_->decode(payload, out);
}

const DecoderOptions& Decoder::options() const { return impl_->options; }

const char* toString(DecodeError e) {
  switch (e) {
    case DecodeError::kNone:
      return "none";
    case DecodeError::kTooLarge:
      return "too_large";
    case DecodeError::kNotJson:
      return "not_json";
    case DecodeError::kNotNumber:
      return "not_number";
    case DecodeError::kNotFinite:
      return "not_finite";
    case DecodeError::kNoFields:
      return "no_fields";
  }
  return "unknown";
}

std::optional<TimeUnit> parseTimeUnit(std::string_view s) {
  if (s == "s") return TimeUnit::kSeconds;
  if (s == "ms") return TimeUnit::kMillis;
  if (s == "us") return TimeUnit::kMicros;
  if (s == "ns") return TimeUnit::kNanos;
  if (s == "rfc3339") return TimeUnit::kRfc3339;
  return std::nullopt;
}

std::optional<Format> parseFormat(std::string_view s) {
  if (s == "json") return Format::kJson;
  if (s == "value") return Format::kValue;
  if (s == "fields") return Format::kFields;
  return std::nullopt;
}

}  // namespace gw::payload
