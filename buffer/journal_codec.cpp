// How the journal stores tags and an aggregate's statistics in BLOB columns, and a reading's value
// as an exact decimal.
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>

#include "buffer/sqlite_journal.h"

namespace gw::buffer::detail {
namespace {

void appendVarint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>(v | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

bool readVarint(std::string_view& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool readString(std::string_view& in, std::string& out) {
  std::uint64_t n = 0;
  if (!readVarint(in, n) || n > in.size()) return false;
  out.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

// 10^k for the scales 0..kMaxDecimalScale, exact as doubles (every power of ten up to 10^22 is).
constexpr double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};
static_assert(std::size(kPow10) == kMaxDecimalScale + 1);
// |m| below this fits SQLite's 6-byte integer: with c's byte, still less than the 8-byte REAL.
constexpr double kMaxDecimalMantissa = 140737488355328.0;  // 2^47

// Nearest integer of |x| < 2^62 without a libm call (no SSE4.1 round on the baseline target);
// the caller checks the result exactly, so ties and the odd wrong neighbour only cost a miss.
double nearest(double x) {
  return static_cast<double>(static_cast<std::int64_t>(x + (x < 0 ? -0.5 : 0.5)));
}

}  // namespace

int decimalScale(double v, double& m) {
  // NaN, infinities and anything from 2^47 on stay as they are (integral or too many digits).
  if (!(std::fabs(v) < kMaxDecimalMantissa)) return 0;
  // -0.0: SQLite would store it as the integer 0 and read back +0.0 (as versions before 7 did);
  // m = 0 at a scale marks it, as no other value gives m = 0.
  if (v == 0) {
    m = 0;
    return std::signbit(v) ? 1 : 0;
  }
  // Integral values stay as they are: SQLite already stores an integral REAL as a small integer.
  if (static_cast<double>(static_cast<std::int64_t>(v)) == v) return 0;
  for (int k = 1; k <= kMaxDecimalScale; ++k) {
    const double x = v * kPow10[k];
    if (!(std::fabs(x) < kMaxDecimalMantissa)) return 0;
    const double r = nearest(x);
    // Exact only when dividing again gives the very same double: the reader divides the same way.
    if (r / kPow10[k] == v) {
      m = r;
      return k;
    }
  }
  return 0;
}

double fromDecimal(double stored, int k) {
  if (k <= 0 || k >= static_cast<int>(std::size(kPow10))) return stored;
  return stored == 0 ? -0.0 : stored / kPow10[k];
}

void compactReading(std::int64_t& t, double& v, std::int64_t& c, const std::int64_t* d) {
  if (c < 0 || c >= kCompactReferences) return;  // a later reference: the plain form
  RowForm f{static_cast<std::uint8_t>(c), 0, false};
  double m = 0;
  f.scale = decimalScale(v, m);
  if (f.scale > 0) v = m;
  // A device time in whole ms (JSON "ts" in ms, as most devices send it) takes 6 bytes as ms
  // where the event time in ns took 8; the event time is device time + d.
  if (d != nullptr) {
    const std::int64_t device = wrapSub(t, *d);
    if (device % kNanosPerMilli == 0) {
      f.ms = true;
      t = device / kNanosPerMilli;
    }
  }
  c = packReference(f);
}

bool expandReading(std::int64_t t, double v, std::int64_t c, const std::int64_t* d, Nanos& event,
                   double& value, std::uint8_t& reference) {
  RowForm f;
  if (!unpackReference(c, f) || (f.ms && d == nullptr)) return false;
  reference = f.reference;
  value = fromDecimal(v, f.scale);
  // t * 10^6 cannot overflow: it was a device time divided by 10^6.
  event = f.ms ? static_cast<std::int64_t>(static_cast<std::uint64_t>(t * kNanosPerMilli) +
                                           static_cast<std::uint64_t>(*d))
               : t;
  return true;
}

void compactAggregate(std::int64_t& t, std::int64_t& d, std::int64_t& c) {
  if (c != 0 || t % kNanosPerMilli != 0 || d % kNanosPerMilli != 0) return;
  t /= kNanosPerMilli;
  d /= kNanosPerMilli;
  c = -1;
}

bool expandAggregate(std::int64_t t, std::int64_t d, std::int64_t c, Nanos& start, Nanos& size) {
  if (c == 0) {
    start = t;
    size = d;
    return true;
  }
  if (c != -1) return false;
  start = t * kNanosPerMilli;  // were divided by 10^6: no overflow
  size = d * kNanosPerMilli;
  return true;
}

std::string encodeTags(const std::vector<std::pair<std::string, std::string>>& tags) {
  std::string out;
  for (const auto& [k, v] : tags) {
    appendVarint(out, k.size());
    out += k;
    appendVarint(out, v.size());
    out += v;
  }
  return out;
}

bool decodeTags(std::string_view in, std::vector<std::pair<std::string, std::string>>& tags) {
  tags.clear();
  while (!in.empty()) {
    auto& [k, v] = tags.emplace_back();
    if (!readString(in, k) || !readString(in, v)) return false;
  }
  return true;
}

// An aggregate's statistics: varints stats, count, late, quantiles, then each other statistic in
// `stats`, in kStatOrder. Before version 7 each was an 8-byte little-endian double (~40 bytes for
// the defaults). Since then (bit kCompactStats of the stats varint) each is a varint h: 0 and the
// 8-byte double, or 1 + zigzag(m) * 9 + k for the exact decimal m / 10^k (k 0..8; k 0 an
// integer below 2^47): a min or max of sensor values takes 2-4 bytes instead of 8, an average
// that is no such decimal 9.
namespace {

constexpr std::uint64_t kCompactStats = 1 << 16;  // above every StatSet bit

void appendDouble(std::string& out, double v) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  for (int i = 0; i < 8; ++i) out += static_cast<char>(bits >> (8 * i));
}

bool readDouble(std::string_view& in, double& v) {
  if (in.size() < 8) return false;
  std::uint64_t bits = 0;
  for (int i = 0; i < 8; ++i)
    bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  in.remove_prefix(8);
  std::memcpy(&v, &bits, sizeof v);
  return true;
}

void appendStat(std::string& out, double v) {
  double m = 0;
  int k = decimalScale(v, m);
  if (k == 0 && std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < kMaxDecimalMantissa &&
      !(v == 0 && std::signbit(v)))
    m = v;  // an integer: scale 0
  else if (k == 0 || m == 0)
    m = std::numeric_limits<double>::quiet_NaN();  // the 8 bytes (and -0.0 as it is)
  if (std::isnan(m)) {
    appendVarint(out, 0);
    appendDouble(out, v);
    return;
  }
  const auto i = static_cast<std::int64_t>(m);
  const std::uint64_t zigzag =
      (static_cast<std::uint64_t>(i) << 1) ^ static_cast<std::uint64_t>(i >> 63);
  appendVarint(out, 1 + zigzag * (kMaxDecimalScale + 1) + static_cast<std::uint64_t>(k));
}

bool readStat(std::string_view& in, double& v) {
  std::uint64_t h = 0;
  if (!readVarint(in, h)) return false;
  if (h == 0) return readDouble(in, v);
  --h;
  const std::uint64_t zigzag = h / (kMaxDecimalScale + 1);
  const int k = static_cast<int>(h % (kMaxDecimalScale + 1));
  if (zigzag >= 2 * static_cast<std::uint64_t>(kMaxDecimalMantissa)) return false;
  const auto m = static_cast<std::int64_t>(zigzag >> 1) ^ -static_cast<std::int64_t>(zigzag & 1);
  v = k == 0 ? static_cast<double>(m) : static_cast<double>(m) / kPow10[k];
  return true;
}

}  // namespace

std::string encodeWindow(const WindowStats& w) {
  std::string out;
  appendVarint(out, w.stats | kCompactStats);
  appendVarint(out, w.count);
  appendVarint(out, w.late);
  appendVarint(out, static_cast<std::uint8_t>(w.quantiles));
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    appendStat(out, w.get(st));
  }
  return out;
}

bool decodeWindow(std::string_view in, WindowStats& w) {
  std::uint64_t stats = 0, quantiles = 0;
  if (!readVarint(in, stats) || !readVarint(in, w.count) || !readVarint(in, w.late) ||
      !readVarint(in, quantiles) || (stats & ~kCompactStats) > 0xffff ||
      quantiles > static_cast<std::uint8_t>(QuantileMode::kCollapsed))
    return false;
  const bool compact = (stats & kCompactStats) != 0;
  w.stats = static_cast<StatSet>(stats & ~kCompactStats);
  w.quantiles = static_cast<QuantileMode>(quantiles);
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    double v = 0;
    if (!(compact ? readStat(in, v) : readDouble(in, v))) return false;
    w.set(st, v);
  }
  return in.empty();
}

}  // namespace gw::buffer::detail
