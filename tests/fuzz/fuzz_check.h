// Shared by the fuzz targets: an invariant that must hold for every input. A broken one
// aborts, which libFuzzer reports as a crash with the input that broke it.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace gw::fuzz {

inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace gw::fuzz
