// liballoc_count.so: counts heap allocations per thread of one process (LD_PRELOAD; a benchmark
// tool, never shipped). tests/bench/pi_bench.py --count-allocs uses it for issue 16's "no
// per-message heap allocation on the hot path": allocations per reading on the event loop's
// thread (the main thread) and on every thread together.
//
// Environment: ALLOC_COUNT_FILE = a file the shim creates and maps shared; the counters live in
// it, so a reader sees them at any moment without signalling the process. Layout (native
// endianness): u64 magic 0x31544e434f4c4c41 ("ALLOCNT1"), u32 slots used, u32 slot capacity,
// then per slot {i32 tid, u32 0, u64 allocations, u64 bytes requested}. A thread takes a slot
// at its first allocation; past the capacity the last slot is shared. Without the variable
// nothing is counted.
//
// Counted: malloc, calloc, realloc (also a shrinking one), memalign, posix_memalign,
// aligned_alloc, valloc, pvalloc. operator new in libstdc++ calls malloc, so C++ allocations
// are counted too. The shim forwards to glibc's __libc_* entry points (no dlsym, which itself
// allocates).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* __libc_valloc(size_t);
void* __libc_pvalloc(size_t);
}

namespace {

constexpr std::uint64_t kMagic = 0x31544e434f4c4c41ull;
constexpr std::uint32_t kSlots = 1024;

struct Slot {
  std::atomic<std::int32_t> tid;
  std::uint32_t pad;
  std::atomic<std::uint64_t> allocations;
  std::atomic<std::uint64_t> bytes;
};

struct Region {
  std::uint64_t magic;
  std::atomic<std::uint32_t> used;
  std::uint32_t capacity;
  Slot slot[kSlots];
};

Region* region = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local Slot* mine = nullptr;

__attribute__((constructor)) void start() {
  const char* path = std::getenv("ALLOC_COUNT_FILE");
  if (path == nullptr || *path == '\0') return;
  const int fd = ::open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  void* p = MAP_FAILED;
  if (::ftruncate(fd, sizeof(Region)) == 0)
    p = ::mmap(nullptr, sizeof(Region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return;
  auto* r = static_cast<Region*>(p);
  r->capacity = kSlots;
  r->magic = kMagic;
  region = r;
}

inline void count(std::size_t bytes) {
  Region* r = region;
  if (r == nullptr) return;
  if (mine == nullptr) {
    std::uint32_t i = r->used.fetch_add(1, std::memory_order_relaxed);
    if (i >= kSlots) {
      i = kSlots - 1;
      r->used.store(kSlots, std::memory_order_relaxed);
    }
    mine = &r->slot[i];
    mine->tid.store(static_cast<std::int32_t>(::syscall(SYS_gettid)), std::memory_order_relaxed);
  }
  mine->allocations.fetch_add(1, std::memory_order_relaxed);
  mine->bytes.fetch_add(bytes, std::memory_order_relaxed);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* malloc(size_t n) {
  count(n);
  return __libc_malloc(n);
}

__attribute__((visibility("default"))) void* calloc(size_t n, size_t size) {
  count(n * size);
  return __libc_calloc(n, size);
}

__attribute__((visibility("default"))) void* realloc(void* p, size_t n) {
  if (n != 0) count(n);
  return __libc_realloc(p, n);
}

__attribute__((visibility("default"))) void* memalign(size_t align, size_t n) {
  count(n);
  return __libc_memalign(align, n);
}

__attribute__((visibility("default"))) void* aligned_alloc(size_t align, size_t n) {
  count(n);
  return __libc_memalign(align, n);
}

__attribute__((visibility("default"))) int posix_memalign(void** out, size_t align, size_t n) {
  if (align % sizeof(void*) != 0 || (align & (align - 1)) != 0) return EINVAL;
  count(n);
  void* p = __libc_memalign(align, n);
  if (p == nullptr && n != 0) return ENOMEM;
  *out = p;
  return 0;
}

__attribute__((visibility("default"))) void* valloc(size_t n) {
  count(n);
  return __libc_valloc(n);
}

__attribute__((visibility("default"))) void* pvalloc(size_t n) {
  count(n);
  return __libc_pvalloc(n);
}

}  // extern "C"
