// Fuzz target for the SenML decoder (RFC 8428 JSON packs): any byte string decodes to records
// or to a named error, and a success keeps the header's promises (finite values, names by the
// RFC's rule, times of the documented kind).
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocols/payload/senml.h"
#include "tests/fuzz/fuzz_check.h"

using gw::fuzz::require;
using gw::payload::SenmlDecoder;
using gw::payload::SenmlError;
using gw::payload::SenmlRecord;

namespace {

bool nameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == ':' || c == '.' || c == '/' || c == '_';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  static SenmlDecoder decoder(16 * 1024);  // reused across inputs, as in the daemon
  static std::vector<SenmlRecord> records;
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  const SenmlError e = decoder.decode(s, records);
  require(toString(e) != nullptr, "error has a name");
  if (e != SenmlError::kNone) {
    require(records.empty(), "an error leaves no records");
    return 0;
  }
  require(!records.empty(), "a success has a record");
  for (const SenmlRecord& r : records) {
    require(std::isfinite(r.value), "values are finite");
    // The resolved name (bn + n), when there is one, follows RFC 8428 4.5.1.
    const size_t n = r.base_name.size() + r.name.size();
    for (size_t i = 0; i < n; ++i) {
      const char c = i < r.base_name.size() ? r.base_name[i] : r.name[i - r.base_name.size()];
      require(nameChar(c), "name characters");
      if (i == 0) require(c != '-' && c != ':' && c != '.' && c != '/' && c != '_', "name start");
    }
    switch (r.time_kind) {
      case SenmlRecord::Time::kNone:
        require(r.time == 0, "no time is 0");
        break;
      case SenmlRecord::Time::kAbsolute:  // at or after 2^28 s: never before 1970
        require(r.time >= 268435456LL * 1'000'000'000, "absolute times are after 1978");
        break;
      case SenmlRecord::Time::kRelative:  // may round to 0 ns (t = 2e-10), or be far back
        require(r.time < 268435456LL * 1'000'000'000, "relative times are under 2^28 s");
        break;
    }
  }
  return 0;
}
