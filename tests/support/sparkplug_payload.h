// Builds Sparkplug B payloads for tests, fuzz seeds and benchmarks (protobuf-c, our schema).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocols/sparkplug/sparkplug_b.pb-c.h"

namespace gw::test {

struct SpMetric {
  std::optional<std::string> name;
  std::optional<std::uint64_t> alias;
  std::optional<std::uint64_t> timestamp;
  std::optional<std::uint32_t> datatype;
  bool historical = false;
  // One value: which field (Metric's oneof number: 10 int, 11 long, 12 float, 13 double,
  // 14 bool, 15 string), and its contents.
  int field = 13;
  std::uint64_t u = 0;
  double d = 0;
  std::string s;
  std::optional<std::int32_t> quality;
};

inline std::string spPayload(const std::vector<SpMetric>& metrics,
                             std::optional<std::uint64_t> seq = std::nullopt,
                             std::optional<std::uint64_t> timestamp = std::nullopt) {
  std::vector<Gw__Sparkplug__Pb__Metric> ms(metrics.size());
  std::vector<Gw__Sparkplug__Pb__Metric*> ptrs;
  std::vector<Gw__Sparkplug__Pb__PropertySet> sets(metrics.size());
  std::vector<Gw__Sparkplug__Pb__PropertyValue> values(metrics.size());
  std::vector<Gw__Sparkplug__Pb__PropertyValue*> value_ptrs(metrics.size());
  static char quality_key[] = "Quality";
  static char* keys[] = {quality_key};
  for (size_t i = 0; i < metrics.size(); ++i) {
    const SpMetric& in = metrics[i];
    auto& m = ms[i];
    gw__sparkplug__pb__metric__init(&m);
    if (in.name) m.name = const_cast<char*>(in.name->c_str());
    if (in.alias) m.has_alias = true, m.alias = *in.alias;
    if (in.timestamp) m.has_timestamp = true, m.timestamp = *in.timestamp;
    if (in.datatype) m.has_datatype = true, m.datatype = *in.datatype;
    if (in.historical) m.has_is_historical = true, m.is_historical = true;
    m.value_case = static_cast<Gw__Sparkplug__Pb__Metric__ValueCase>(in.field);
    switch (in.field) {
      case 10:
        m.int_value = static_cast<std::uint32_t>(in.u);
        break;
      case 11:
        m.long_value = in.u;
        break;
      case 12:
        m.float_value = static_cast<float>(in.d);
        break;
      case 13:
        m.double_value = in.d;
        break;
      case 14:
        m.boolean_value = in.u != 0;
        break;
      case 15:
        m.string_value = const_cast<char*>(in.s.c_str());
        break;
      default:
        break;
    }
    if (in.quality) {
      gw__sparkplug__pb__property_set__init(&sets[i]);
      gw__sparkplug__pb__property_value__init(&values[i]);
      values[i].has_type = true;
      values[i].type = 3;  // Int32
      values[i].value_case = GW__SPARKPLUG__PB__PROPERTY_VALUE__VALUE_INT_VALUE;
      values[i].int_value = static_cast<std::uint32_t>(*in.quality);
      value_ptrs[i] = &values[i];
      sets[i].n_keys = 1;
      sets[i].keys = keys;
      sets[i].n_values = 1;
      sets[i].values = &value_ptrs[i];
      m.properties = &sets[i];
    }
    ptrs.push_back(&m);
  }
  Gw__Sparkplug__Pb__Payload p;
  gw__sparkplug__pb__payload__init(&p);
  if (seq) p.has_seq = true, p.seq = *seq;
  if (timestamp) p.has_timestamp = true, p.timestamp = *timestamp;
  p.n_metrics = ptrs.size();
  p.metrics = ptrs.data();
  std::string out(gw__sparkplug__pb__payload__get_packed_size(&p), '\0');
  gw__sparkplug__pb__payload__pack(&p, reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

}  // namespace gw::test
