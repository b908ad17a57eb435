// TransientArena: LIFO scopes, 256-byte alignment, growth without moving live memory,
// one chunk of the high-water size once the outermost scope closes, and the backend
// memory it holds.
#include "runtime/core/transient_arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/core/backend.h"

namespace lockstep {
namespace {

uintptr_t Address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

TEST(TransientArenaTest, ScopesGiveBackInLifoOrderAndAlign) {
  auto backend = CreateCpuBackend();
  TransientArena arena(backend.get());
  TransientArena::Scope outer(arena);
  void* a = arena.Acquire(10);
  void* b = arena.Acquire(300);
  EXPECT_EQ(Address(a) % 256, 0u);
  EXPECT_EQ(Address(b) % 256, 0u);
  EXPECT_EQ(Address(b) - Address(a), 256u) << "10 bytes round up to 256";
  void* c = nullptr;
  {
    TransientArena::Scope inner(arena);
    c = arena.Acquire(1000);
    EXPECT_EQ(Address(c) - Address(b), 512u);
  }
  EXPECT_EQ(arena.Acquire(1), c) << "the inner scope gave its memory back";
  EXPECT_EQ(arena.high_water_bytes(), 256u + 512u + 1024u);
}

TEST(TransientArenaTest, GrowsWithoutMovingLiveMemoryThenConsolidates) {
  auto backend = CreateCpuBackend();
  TransientArena arena(backend.get());
  const size_t big = size_t{3} << 20;  // more than the first chunk (512 KiB) holds
  {
    TransientArena::Scope scope(arena);
    auto* first = static_cast<unsigned char*>(arena.Acquire(1 << 19));
    std::memset(first, 0xA5, 1 << 19);
    auto* second = static_cast<unsigned char*>(arena.Acquire(big));  // a new chunk
    std::memset(second, 0x5A, big);
    EXPECT_EQ(first[0], 0xA5) << "live memory did not move";
    EXPECT_EQ(first[(1 << 19) - 1], 0xA5);
    EXPECT_GE(arena.reserved_bytes(), (size_t{1} << 19) + big);
  }
  // The outermost scope closed with two chunks: one of the high-water size replaces them.
  EXPECT_EQ(arena.high_water_bytes(), (size_t{1} << 19) + big);
  EXPECT_EQ(arena.reserved_bytes(), arena.high_water_bytes());
  EXPECT_EQ(backend->memory_stats().bytes_in_use, arena.reserved_bytes() + 256) << "held through the backend";
  {
    TransientArena::Scope scope(arena);  // the same pattern now fits in the one chunk
    arena.Acquire(1 << 19);
    arena.Acquire(big);
  }
  EXPECT_EQ(arena.reserved_bytes(), arena.high_water_bytes());
}

TEST(TransientArenaDeathTest, AcquireNeedsAScope) {
  auto backend = CreateCpuBackend();
  TransientArena arena(backend.get());
  EXPECT_DEATH(arena.Acquire(16), "outside a Scope");
}

}  // namespace
}  // namespace lockstep
