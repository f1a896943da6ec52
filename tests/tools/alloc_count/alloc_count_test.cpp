// Checks liballoc_count.so: a child (this program again, under LD_PRELOAD) allocates a known
// number of times on its main thread and on a second thread; the counters in the shared file
// must show them on the right threads.
// Usage: alloc_count_test PATH/liballoc_count.so
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kMain = 1000, kOther = 500;

void* volatile sink;  // keeps the compiler from eliding the allocations

void allocate(int n) {
  for (int i = 0; i < n; ++i) {
    void* p = std::malloc(static_cast<size_t>(64 + i % 7));
    sink = p;
    std::free(p);
  }
}

struct Slot {
  std::int32_t tid;
  std::uint32_t pad;
  std::uint64_t allocations, bytes;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--child") == 0) {
    allocate(kMain);
    std::thread t([] { allocate(kOther); });
    t.join();
    // The parent reads the counters of this still-living process (the file stays mapped).
    std::ofstream(argv[2]) << ::getpid();
    return 0;
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: alloc_count_test PATH/liballoc_count.so\n");
    return 2;
  }
  const auto dir =
      std::filesystem::temp_directory_path() / ("alloc-count-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto counters = dir / "counters", pidfile = dir / "pid";
  const pid_t child = ::fork();
  if (child == 0) {
    ::setenv("LD_PRELOAD", argv[1], 1);
    ::setenv("ALLOC_COUNT_FILE", counters.c_str(), 1);
    ::execl("/proc/self/exe", "alloc_count_test", "--child", pidfile.c_str(),
            static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      std::fprintf(stderr, "FAILED: %s\n", what.c_str());
      ++failures;
    }
  };
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ran");
  std::ifstream in(counters, std::ios::binary);
  std::uint64_t magic = 0;
  std::uint32_t used = 0, capacity = 0;
  in.read(reinterpret_cast<char*>(&magic), 8);
  in.read(reinterpret_cast<char*>(&used), 4);
  in.read(reinterpret_cast<char*>(&capacity), 4);
  check(in && magic == 0x31544e434f4c4c41ull, "the counter file has the magic");
  std::vector<Slot> slots(std::min(used, capacity));
  in.read(reinterpret_cast<char*>(slots.data()),
          static_cast<std::streamsize>(slots.size() * sizeof(Slot)));
  std::uint64_t main_count = 0, other = 0;
  for (const Slot& s : slots) (s.tid == child ? main_count : other) += s.allocations;
  // Start-up (the loader, iostreams, the thread) allocates a little more than the loops.
  check(main_count >= kMain && main_count < kMain + 200,
        "main thread: " + std::to_string(main_count) + " allocations, expected ~" +
            std::to_string(kMain));
  check(other >= kOther && other < kOther + 50, "second thread: " + std::to_string(other) +
                                                    " allocations, expected ~" +
                                                    std::to_string(kOther));
  std::filesystem::remove_all(dir);
  if (failures == 0)
    std::printf("alloc_count: %llu on the main thread, %llu on the other\n",
                static_cast<unsigned long long>(main_count),
                static_cast<unsigned long long>(other));
  return failures == 0 ? 0 : 1;
}
