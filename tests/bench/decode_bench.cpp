// Payload decoder micro-benchmark: ns per decode of typical sensor payloads, and a check that
// the steady state does not allocate. Run a Release build: `decode_bench [iterations]`.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>

#include "protocols/payload/decoder.h"
#include "tests/support/alloc_counter.h"

using namespace gw::payload;

namespace {

int run(const char* name, DecoderOptions options, std::string_view payload, long iterations) {
  std::string shown(payload);
  for (char& c : shown)
    if (c == '\n') c = ' ';
  Decoder decoder(std::move(options));
  Decoded out;
  double sink = 0;
  for (int i = 0; i < 1000; ++i) decoder.decode(payload, out);  // warm up, size the buffers
  const long allocations_before = gw::test::allocations();
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < iterations; ++i) {
    if (decoder.decode(payload, out) != DecodeError::kNone) {
      std::fprintf(stderr, "%s: decode failed\n", name);
      return 1;
    }
    sink += out.values[0].value;
  }
  const auto ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  const long allocations = gw::test::allocations() - allocations_before;
  std::printf("%7.1f ns/decode  %ld allocations  %-7s %s  (checksum %g)\n", ns.count() / iterations,
              allocations, name, shown.c_str(), sink);
  return allocations == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  int rc = 0;
  rc |= run("json", DecoderOptions{Format::kJson, "value", "ts", TimeUnit::kMillis},
            R"({"value":21.53,"ts":1795256130123})", iterations);
  rc |= run("json", DecoderOptions{Format::kJson, "data.temp", "ts", TimeUnit::kRfc3339},
            R"({"ts":"2026-11-21T10:15:30.123Z","data":{"temp":"21.53","hum":40}})", iterations);
  rc |= run("fields", DecoderOptions{Format::kFields, "value", "ts", TimeUnit::kMillis},
            R"({"temp":21.53,"hum":40.1,"pressure":1013.2,"ts":1795256130123})", iterations);
  rc |= run("value", DecoderOptions{Format::kValue}, "21.53\n", iterations);
  return rc;
}
