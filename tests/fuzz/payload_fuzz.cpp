// Fuzz target for the payload decoders and topic templates: any byte string must decode to a
// value or to a counted error, never crash, hang or read out of bounds, and a success must
// keep the documented promises (finite values, named fields, valid views).
//
// With clang: built with -fsanitize=fuzzer,address,undefined, it is a libFuzzer target.
// With any compiler: defining GW_FUZZ_STANDALONE adds a main() that replays files given as
// arguments, then mutates built-in seeds at random (`payload_fuzz [-n ITERATIONS] [FILES]`),
// so the target also runs under gcc with the sanitizers.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocols/mqtt/topic_template.h"
#include "protocols/payload/decoder.h"

using namespace gw::payload;

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

void check(Decoder& d, std::string_view data) {
  Decoded out;
  const DecodeError e = d.decode(data, out);
  require(toString(e) != nullptr, "error has a name");
  if (e != DecodeError::kNone) {
    require(out.values.empty(), "an error leaves no values");
    require(!out.device_time && !out.bad_timestamp, "an error leaves no time");
    return;
  }
  require(!out.values.empty(), "a success has a value");
  require(!(out.device_time && out.bad_timestamp), "a bad timestamp has no time");
  const Format f = d.options().format;
  if (f != Format::kFields) require(out.values.size() == 1, "json/value give one value");
  for (const DecodedValue& v : out.values) {
    require(std::isfinite(v.value), "values are finite");
    require(f == Format::kFields ? !v.metric.empty() : v.metric.empty(), "metric names");
    char sum = 0;
    for (char c : v.metric) sum = static_cast<char>(sum ^ c);  // readable (ASan checks)
    volatile char sink = sum;
    (void)sink;
  }
}

void checkTemplate(std::string_view data) {
  // The first line is a template, the rest a topic.
  const size_t nl = data.find('\n');
  const std::string_view text = data.substr(0, nl);
  const std::string_view topic = nl == std::string_view::npos ? "" : data.substr(nl + 1);
  std::string error;
  const auto t = gw::mqtt::TopicTemplate::parse(text, error);
  require(t.has_value() == error.empty(), "a parse fails with a message");
  gw::mqtt::topicMatchesFilter(text, topic);
  if (!t) return;
  gw::Series s;
  if (t->match(topic, s)) {
    if (!gw::mqtt::topicMatchesFilter(t->filter(), topic)) {
      std::fprintf(stderr, "template '%.*s' topic '%.*s' filter '%s'\n", int(text.size()),
                   text.data(), int(topic.size()), topic.data(), t->filter().c_str());
      require(false, "the filter covers the template");
    }
    require(!t->capturesDevice() || !s.device.empty(), "a captured device is not empty");
  }
}

struct Decoders {
  Decoder json{DecoderOptions{Format::kJson, "value", "ts", TimeUnit::kMillis}};
  Decoder nested{DecoderOptions{Format::kJson, "data.temp", "meta.ts", TimeUnit::kRfc3339}};
  Decoder ns{DecoderOptions{Format::kJson, "v", "t", TimeUnit::kNanos}};
  Decoder seconds{DecoderOptions{Format::kFields, "value", "ts", TimeUnit::kSeconds}};
  Decoder value{DecoderOptions{Format::kValue, "", "", TimeUnit::kMillis, 64 * 1024}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  static Decoders decoders;  // reused across inputs, as in the daemon
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  check(decoders.json, s);
  check(decoders.nested, s);
  check(decoders.ns, s);
  check(decoders.seconds, s);
  check(decoders.value, s);
  checkTemplate(s);
  return 0;
}

#ifdef GW_FUZZ_STANDALONE
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  long iterations = 200000;
  int first_file = 1;
  if (argc > 2 && std::string_view(argv[1]) == "-n") {
    iterations = std::atol(argv[2]);
    first_file = 3;
  }
  for (int i = first_file; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  const std::vector<std::string> seeds = {
      R"({"value":21.53,"ts":1795256130123})",
      R"({"data":{"temp":"19.5","hum":40},"meta":{"ts":"2026-11-21T10:15:30.123+02:00"}})",
      R"({"v":-1.5e300,"t":1795256130123456789,"x":[true,false,null,{"a":"\u00e9\n"}]})",
      R"({"a":1,"b":2.5,"ts":1795256130.5,"s":"x","o":{},"e":1e999})",
      "  -21.5e-3\n",
      "plant1/{line}/{device}/{metric}/#\nplant1/l3/pump-7/temp/x",
      "{device}/+/#\n$SYS/a/b",
  };
  const char alphabet[] = "{}[]\":,.-+eE0123456789 \n\t\\u/#+tfnalrsu{device}\xff\x80";
  std::mt19937_64 rng(12345);
  for (long n = 0; n < iterations; ++n) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
      const char c = alphabet[rng() % (sizeof(alphabet) - 1)];
      switch (rng() % 4) {
        case 0:
          s.insert(pos, 1, c);
          break;
        case 1:
          if (pos < s.size()) s.erase(pos, 1 + rng() % 4);
          break;
        case 2:
          if (pos < s.size()) s[pos] = c;
          break;
        default:  // splice in part of another seed
          const std::string& o = seeds[rng() % seeds.size()];
          const size_t from = rng() % o.size();
          s.insert(pos, o, from, rng() % (o.size() - from + 1));
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  std::printf("payload_fuzz: %ld mutated inputs, no invariant broken\n", iterations);
  return 0;
}
#endif
