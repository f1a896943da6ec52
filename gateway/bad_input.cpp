#include "gateway/bad_input.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "core/json.h"
#include "core/time.h"
#include "gateway/pipeline.h"
#include "gateway/pipeline_impl.h"

namespace gw {

void BadDeviceCounts::add(std::string_view device) {
  if (auto it = counts_.find(device); it != counts_.end()) {
    ++it->second;
  } else if (counts_.size() < max_) {
    counts_.emplace(std::string(device), 1);
  } else {
    ++others_;
  }
}

std::uint64_t BadDeviceCounts::count(std::string_view device) const {
  auto it = counts_.find(device);
  return it == counts_.end() ? 0 : it->second;
}

std::vector<std::pair<std::string, std::uint64_t>> BadDeviceCounts::top(std::size_t n) const {
  std::vector<std::pair<std::string, std::uint64_t>> all(counts_.begin(), counts_.end());
  const auto order = [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  };
  n = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), order);
  all.resize(n);
  return all;
}

std::optional<std::size_t> parseBadRequest(std::string_view line) {
  if (line == "bad") return 20;
  if (line.substr(0, 4) != "bad ") return std::nullopt;
  line.remove_prefix(4);
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), n);
  if (ec != std::errc() || p != line.data() + line.size()) return 0;
  return std::clamp<std::size_t>(n, 1, kBadMaxLetters);
}

std::string badRequestLine(std::size_t limit) { return fmt::format("bad {}", limit); }

std::string badJson(const std::map<std::string, std::uint64_t, std::less<>>& reasons,
                    const BadDeviceCounts& devices,
                    const std::vector<buffer::DeadLetter>& letters) {
  std::uint64_t total = 0;
  for (const auto& [reason, n] : reasons) total += n;
  std::string out = fmt::format(R"({{"total":{},"reasons":{{)", total);
  bool first = true;
  for (const auto& [reason, n] : reasons) {
    if (!first) out += ',';
    first = false;
    json::appendString(out, reason);
    out += fmt::format(":{}", n);
  }
  out += R"(},"devices":[)";
  first = true;
  for (const auto& [device, n] : devices.top(kBadTopDevices)) {
    out += first ? R"({"device":)" : R"(,{"device":)";
    first = false;
    json::appendString(out, device);
    out += fmt::format(R"(,"count":{}}})", n);
  }
  out += fmt::format(
      R"(],"devices_total":{},"other_devices":{},"caps":{{"rows":{},"bytes":{},"excerpt":{}}},)"
      R"("letters":[)",
      devices.devices(), devices.others(), buffer::kDeadLetterMaxRows, buffer::kDeadLetterMaxBytes,
      buffer::kDeadLetterExcerpt);
  first = true;
  for (const auto& d : letters) {
    out += first ? R"({"time":")" : R"(,{"time":")";
    first = false;
    appendRfc3339Millis(out, d.time);
    out += R"(","source":)";
    json::appendString(out, d.source);
    out += R"(,"where":)";
    json::appendString(out, d.where);
    out += R"(,"reason":)";
    json::appendString(out, d.reason);
    out += R"(,"device":)";
    json::appendString(out, d.device);
    out += fmt::format(R"(,"size":{},"excerpt":)", d.size);
    json::appendString(out, d.excerpt);
    out += '}';
  }
  out += "]}";
  return out;
}

std::string Pipeline::badJson(std::size_t limit) const {
  return gw::badJson(impl_->bad_counts, impl_->bad_devices, impl_->journal->deadLetters(limit));
}

}  // namespace gw
