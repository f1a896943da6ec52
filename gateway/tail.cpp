#include "gateway/tail.h"

#include <fmt/format.h>

#include <charconv>

#include "core/json.h"
#include "core/record_json.h"
#include "gateway/pipeline.h"
#include "gateway/pipeline_impl.h"

namespace gw {
namespace {

bool parseUint(std::string_view s, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view nextWord(std::string_view& s) {
  const auto sp = s.find(' ');
  std::string_view w = s.substr(0, sp);
  s = sp == std::string_view::npos ? std::string_view() : s.substr(sp + 1);
  return w;
}

}  // namespace

std::optional<TailRequest> parseTailRequest(std::string_view line) {
  if (line.substr(0, 5) != "tail ") return std::nullopt;
  line.remove_prefix(5);
  TailRequest r;
  std::uint64_t limit = 0;
  if (!parseUint(nextWord(line), limit) || !parseUint(nextWord(line), r.after)) return r;
  r.limit =
      static_cast<size_t>(std::min<std::uint64_t>(std::max<std::uint64_t>(limit, 1), kTailMax));
  r.device = std::string(line);
  return r;
}

std::string tailRequestLine(const TailRequest& r) {
  return fmt::format("tail {} {} {}", r.limit, r.after, r.device);
}

std::string tailJson(std::string_view device, std::uint64_t last_seq,
                     const std::vector<ReadingRecord>& readings) {
  std::string out = R"({"device":)";
  json::appendString(out, device);
  out += fmt::format(R"(,"last_seq":{},"readings":[)", last_seq);
  for (size_t i = 0; i < readings.size(); ++i) {
    if (i > 0) out += ',';
    appendReadingJson(out, readings[i]);
  }
  out += "]}";
  return out;
}

std::string Pipeline::tailJson(std::string_view device, std::uint64_t after, size_t limit) const {
  std::vector<ReadingRecord> rows;
  impl_->journal->readDevice(device, after, limit, kTailScan, rows);
  return gw::tailJson(device, impl_->journal->lastSeq(), rows);
}

}  // namespace gw
