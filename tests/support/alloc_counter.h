// Counts heap allocations so a benchmark or test can assert that a hot path allocates nothing.
// Replaces the global operator new/delete: include this header in exactly ONE source file of
// an executable. Read the count with gw::test::allocations().
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace gw::test {
inline std::atomic<long> g_allocations{0};
inline long allocations() { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace gw::test

void* operator new(std::size_t n) {
  gw::test::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  gw::test::g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
