// How the journal stores tags and an aggregate's statistics in BLOB columns.
#include <cstring>
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

}  // namespace

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
// `stats` as an 8-byte little-endian double, in kStatOrder. ~40 bytes for the defaults.
std::string encodeWindow(const WindowStats& w) {
  std::string out;
  appendVarint(out, w.stats);
  appendVarint(out, w.count);
  appendVarint(out, w.late);
  appendVarint(out, static_cast<std::uint8_t>(w.quantiles));
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    std::uint64_t bits = 0;
    const double v = w.get(st);
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 8; ++i) out += static_cast<char>(bits >> (8 * i));
  }
  return out;
}

bool decodeWindow(std::string_view in, WindowStats& w) {
  std::uint64_t stats = 0, quantiles = 0;
  if (!readVarint(in, stats) || !readVarint(in, w.count) || !readVarint(in, w.late) ||
      !readVarint(in, quantiles) || stats > 0xffff ||
      quantiles > static_cast<std::uint8_t>(QuantileMode::kCollapsed))
    return false;
  w.stats = static_cast<StatSet>(stats);
  w.quantiles = static_cast<QuantileMode>(quantiles);
  for (Stat st : kStatOrder) {
    if (st == Stat::kCount || !has(w.stats, st)) continue;
    if (in.size() < 8) return false;
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i)
      bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(8);
    double v = 0;
    std::memcpy(&v, &bits, sizeof v);
    w.set(st, v);
  }
  return in.empty();
}

}  // namespace gw::buffer::detail
