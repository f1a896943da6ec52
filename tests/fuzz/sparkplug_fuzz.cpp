// Fuzz target for the Sparkplug B host (protocols/sparkplug/sparkplug_host.h): any payload on
// any Sparkplug topic, and any stored state value, is handled without a crash, and what comes
// out keeps the header's promises (device under the edge node, metric named, group tag first,
// finite values, state that a restarted host reads back).
//
// Input: byte 0 picks the topic (low 3 bits) and whether the rest is a stored births value for
// a new host (bit 7) instead of a payload; the rest is the payload (or the state value).
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "protocols/sparkplug/sparkplug_host.h"
#include "tests/fuzz/fuzz_check.h"

using gw::fuzz::require;

namespace {

struct Out final : gw::sparkplug::HostOutput, gw::sparkplug::StateStore {
  std::string_view node;
  std::map<std::string, std::string, std::less<>> store;

  void reading(gw::Series& s, const gw::Decoded& d, bool historical) override {
    require(d.values.size() == 1, "one value per metric");
    require(std::isfinite(d.values[0].value), "values are finite");
    require(!s.metric.empty(), "metrics are named");
    require(s.device.substr(0, node.size()) == node, "device starts with the edge node");
    require(!s.tags.empty() && s.tags[0].first == "group", "group tag first");
    require(d.historical == historical, "historical flag");
    if (d.device_time) require(*d.device_time >= 0, "device times are after 1970");
  }
  void rebirth(std::string_view group, std::string_view edge_node, std::string_view) override {
    require(!group.empty() && !edge_node.empty(), "rebirth names a node");
  }
  void online(std::string_view device, bool) override { require(!device.empty(), "device"); }
  void skipped(std::string_view reason) override { require(!reason.empty(), "skip reason"); }
  std::optional<std::string> get(std::string_view key) const override {
    auto it = store.find(key);
    if (it == store.end()) return std::nullopt;
    return it->second;
  }
  void put(std::string_view key, std::string value) override {
    store[std::string(key)] = std::move(value);
  }
};

constexpr std::string_view kTopics[] = {
    "spBv1.0/g/NBIRTH/e", "spBv1.0/g/DBIRTH/e/d", "spBv1.0/g/NDATA/e", "spBv1.0/g/DDATA/e/d",
    "spBv1.0/g/NDEATH/e", "spBv1.0/g/DDEATH/e/d", "spBv1.0/g/NCMD/e",  "spBv1.0/g/XDATA/e",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  static Out out;
  static auto* host = new gw::sparkplug::Host({}, &out);  // state kept across inputs
  static gw::Nanos now = 0;
  out.node = "e";
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  now += gw::kNanosPerSecond / 4;
  if (data[0] & 0x80) {
    // A stored births value (maybe damaged) read by a fresh host, then DATA resolved with it.
    Out o;
    o.node = "e";
    o.store["sparkplug/g/e"] = std::string(rest);
    gw::sparkplug::Host h({}, &o);
    h.handle("spBv1.0/g/DDATA/e/d", std::string_view("\x12\x04\x10\x01\x70\x01", 6), 0, o);
    return 0;
  }
  const std::string_view topic = kTopics[data[0] & 7];
  const char* error = host->handle(topic, rest, now, out);
  if (error) require(std::string_view(error).substr(0, 10) == "sparkplug_", "error names");
  host->tick(now, out);
  if (auto next = host->nextDeadline()) require(*next > now, "due work was done");
  // The state written reads back in a restarted host.
  for (const auto& [key, value] : out.store) {
    Out o;
    o.node = "e";
    o.store[key] = value;
    gw::sparkplug::Host h({}, &o);
    h.handle("spBv1.0/g/NDATA/e", std::string_view("\x12\x04\x10\x01\x70\x01", 6), now, o);
  }
  return 0;
}
