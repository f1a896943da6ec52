// Fuzz target for path templates (core/path_template.h), shared by the MQTT and CoAP sources.
// Input: a template on the first line, a topic or path after it. A parse fails with a message
// or gives a template whose subscription filter covers every topic it matches, and a match
// fills the series with non-empty captures.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/path_template.h"
#include "tests/fuzz/fuzz_check.h"

using gw::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  const size_t nl = s.find('\n');
  const std::string_view text = s.substr(0, nl);
  const std::string_view topic = nl == std::string_view::npos ? "" : s.substr(nl + 1);
  std::string error;
  const auto t = gw::PathTemplate::parse(text, error);
  require(t.has_value() == error.empty(), "a parse fails with a message");
  (void)gw::topicMatchesFilter(text, topic);
  if (!t) return 0;
  require(t->text() == text, "the template keeps its text");
  const std::string filter = t->filter();
  require(!filter.empty(), "a filter is not empty");
  // Reparsing the template gives the same filter.
  std::string error2;
  const auto again = gw::PathTemplate::parse(t->text(), error2);
  require(again && again->filter() == filter, "parsing is deterministic");
  gw::Series series;
  series.device = "stale";  // match() must overwrite what it captures
  if (!t->match(topic, series)) return 0;
  require(gw::topicMatchesFilter(filter, topic), "the filter covers the template");
  if (t->capturesDevice()) require(!series.device.empty(), "a captured device is not empty");
  if (t->capturesMetric()) require(!series.metric.empty(), "a captured metric is not empty");
  for (const auto& [k, v] : series.tags) {
    require(!k.empty() && !v.empty(), "tags are named and not empty");
    require(v.find('/') == std::string::npos, "a capture is one level");
  }
  return 0;
}
