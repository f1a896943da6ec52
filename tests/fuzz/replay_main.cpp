// A main() for the fuzz targets in builds without libFuzzer (gcc, the release preset): runs
// every file given, or every file in a folder given, through LLVMFuzzerTestOneInput once. The
// unit tests replay each target's seed corpus with it, so the targets keep compiling and the
// seeds keep passing in every build.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size);

namespace {

void replay(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", file.c_str());
    std::exit(1);
  }
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  int files = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    if (std::filesystem::is_directory(arg)) {
      for (const auto& e : std::filesystem::directory_iterator(arg)) {
        if (!e.is_regular_file()) continue;
        replay(e.path());
        ++files;
      }
    } else {
      replay(arg);
      ++files;
    }
  }
  if (files == 0) {
    std::fprintf(stderr, "no input files\n");
    return 1;
  }
  std::printf("%s: %d inputs replayed, no invariant broken\n", argv[0], files);
  return 0;
}
