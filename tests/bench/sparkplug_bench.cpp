// Sparkplug B host micro-benchmark: ns per metric for a DDATA of 100 metrics sent by alias (the
// common case after a DBIRTH): protobuf decoding, alias resolution and the readings handed on
// (the journal append is not part of it). Run a Release build: `sparkplug_bench [messages]`.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "protocols/sparkplug/sparkplug_host.h"
#include "tests/support/sparkplug_payload.h"

using namespace gw;

namespace {

constexpr int kMetrics = 100;

struct Out final : sparkplug::HostOutput {
  double sum = 0;
  long readings = 0;
  void reading(Series&, const Decoded& d, bool) override {
    sum += d.values[0].value;
    ++readings;
  }
  void rebirth(std::string_view, std::string_view, std::string_view) override {
    std::fprintf(stderr, "unexpected rebirth\n");
    std::exit(1);
  }
  void online(std::string_view, bool) override {}
  void skipped(std::string_view) override {}
};

}  // namespace

int main(int argc, char** argv) {
  const long messages = argc > 1 ? std::atol(argv[1]) : 100'000;
  std::vector<test::SpMetric> birth, data;
  for (int i = 0; i < kMetrics; ++i) {
    test::SpMetric m;
    m.name = "Line3/Motor" + std::to_string(i / 4) + "/Metric" + std::to_string(i);
    m.alias = static_cast<std::uint64_t>(i + 1);
    m.datatype = 10;  // Double
    m.d = i;
    birth.push_back(m);
    test::SpMetric d;
    d.alias = m.alias;
    d.d = i * 1.5;
    d.timestamp = 1780000000000ull + i;
    data.push_back(d);
  }
  Out out;
  sparkplug::Host host({}, nullptr);
  host.handle("spBv1.0/plant1/NBIRTH/edge1", test::spPayload({}, 0, 1780000000000ull), 0, out);
  host.handle("spBv1.0/plant1/DBIRTH/edge1/dev1", test::spPayload(birth, 1, 1780000000000ull), 0,
              out);
  std::vector<std::string> payloads;
  for (int s = 0; s < 256; ++s)
    payloads.push_back(test::spPayload(data, static_cast<std::uint64_t>(s), 1780000000000ull));
  out.readings = 0;
  int seq = 2;
  for (int i = 0; i < 1000; ++i)
    host.handle("spBv1.0/plant1/DDATA/edge1/dev1", payloads[seq++ % 256], 0, out);
  const long readings_before = out.readings;
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < messages; ++i)
    host.handle("spBv1.0/plant1/DDATA/edge1/dev1", payloads[seq++ % 256], 0, out);
  const auto ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  const long readings = out.readings - readings_before;
  if (readings != messages * kMetrics) {
    std::fprintf(stderr, "expected %ld readings, got %ld\n", messages * kMetrics, readings);
    return 1;
  }
  std::printf(
      "%7.1f ns/metric  %7.0f ns/message (DDATA, %d metrics by alias, %zu bytes)  "
      "(checksum %g)\n",
      ns.count() / readings, ns.count() / messages, kMetrics, payloads[0].size(), out.sum);
  return 0;
}
