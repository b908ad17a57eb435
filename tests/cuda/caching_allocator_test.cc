// The caching allocator's bookkeeping on host memory (no device needed): a
// repeated step stops calling the raw allocator, statistics and peaks are exact,
// and running out of memory empties the cache and retries before failing.
#include "kernels/cuda/caching_allocator.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace lockstep::kernels::cuda {
namespace {

// malloc with a byte limit, counting what is outstanding.
struct LimitedHostMemory {
  size_t limit = SIZE_MAX;
  size_t outstanding = 0;
  std::set<void*> live;
  std::map<void*, size_t> sizes;

  RawMemory Raw() {
    RawMemory raw;
    raw.allocate = [this](size_t bytes) -> void* {
      if (outstanding + bytes > limit) return nullptr;
      void* p = std::malloc(bytes);
      outstanding += bytes;
      live.insert(p);
      sizes[p] = bytes;
      return p;
    };
    raw.free = [this](void* p) {
      EXPECT_EQ(live.erase(p), 1u) << "raw free of an unknown block";
      outstanding -= sizes[p];
      sizes.erase(p);
      std::free(p);
    };
    return raw;
  }
};

TEST(CachingAllocatorTest, RoundsSmallTo512AndLargeTo2MiB) {
  EXPECT_EQ(CachingAllocator::RoundedSize(1), 512u);
  EXPECT_EQ(CachingAllocator::RoundedSize(512), 512u);
  EXPECT_EQ(CachingAllocator::RoundedSize(513), 1024u);
  EXPECT_EQ(CachingAllocator::RoundedSize(size_t{1} << 20), size_t{1} << 20);
  EXPECT_EQ(CachingAllocator::RoundedSize((size_t{1} << 20) + 1), size_t{2} << 20);
  EXPECT_EQ(CachingAllocator::RoundedSize((size_t{5} << 20) + 7), size_t{6} << 20);
  EXPECT_TRUE(CachingAllocator::Fits(1024, 1024));
  EXPECT_FALSE(CachingAllocator::Fits(1536, 1024));  // small sizes reuse exact classes only
  EXPECT_TRUE(CachingAllocator::Fits(size_t{10} << 20, size_t{8} << 20));
  EXPECT_FALSE(CachingAllocator::Fits(size_t{12} << 20, size_t{8} << 20));
  EXPECT_FALSE(CachingAllocator::Fits(size_t{6} << 20, size_t{8} << 20));
}

TEST(CachingAllocatorTest, RepeatedStepsAllocateRawMemoryOnlyInTheFirst) {
  LimitedHostMemory host;
  CachingAllocator alloc(host.Raw());
  // One "step": activations of several sizes, a workspace freed mid-step and reused.
  const std::vector<size_t> sizes = {100, 4096, 3 << 20, 700, 17 << 20, 4096};
  int64_t raw_after_first = 0;
  for (int step = 0; step < 5; ++step) {
    std::vector<void*> blocks;
    for (size_t s : sizes) {
      void* p = alloc.Allocate(s);
      ASSERT_NE(p, nullptr);
      blocks.push_back(p);
    }
    void* ws = alloc.Allocate(1 << 16);
    alloc.Free(ws);
    void* ws2 = alloc.Allocate(1 << 16);
    EXPECT_EQ(ws2, ws) << "a freed block of the same size is reused";
    alloc.Free(ws2);
    for (void* p : blocks) alloc.Free(p);
    if (step == 0) raw_after_first = alloc.stats().raw_allocations;
  }
  const AllocatorStats st = alloc.stats();
  EXPECT_EQ(st.raw_allocations, raw_after_first);
  EXPECT_EQ(st.raw_allocations, static_cast<int64_t>(sizes.size()) + 1);
  EXPECT_EQ(st.bytes_in_use, 0u);
  const size_t step_bytes = 512 + 4096 + (4u << 20) + 1024 + (18u << 20) + 4096;
  EXPECT_EQ(st.peak_bytes_in_use, step_bytes + (1 << 16));
  EXPECT_EQ(st.bytes_reserved, step_bytes + (1 << 16));
  EXPECT_EQ(st.bytes_reserved, host.outstanding);
  EXPECT_EQ(st.cache_hits, 4 * (static_cast<int64_t>(sizes.size()) + 2) + 1);
  EXPECT_EQ(alloc.leaked_blocks(), 0);
}

TEST(CachingAllocatorTest, ReusedHookSeesEveryCacheHitWithItsBlockSize) {
  LimitedHostMemory host;
  RawMemory raw = host.Raw();
  std::vector<std::pair<void*, size_t>> reused;
  raw.reused = [&reused](void* p, size_t bytes) { reused.emplace_back(p, bytes); };
  CachingAllocator alloc(raw);
  void* a = alloc.Allocate(5 << 20);  // a 6 MiB block
  alloc.Free(a);
  EXPECT_TRUE(reused.empty()) << "not for a fresh block";
  void* b = alloc.Allocate(5 << 20);
  ASSERT_EQ(b, a);
  ASSERT_EQ(reused.size(), 1u);
  EXPECT_EQ(reused[0].first, a);
  EXPECT_EQ(reused[0].second, size_t{6} << 20);
  alloc.Free(b);
  EXPECT_EQ(alloc.stats().cache_hits, 1);
}

TEST(CachingAllocatorTest, ZeroBytesIsNullAndFreeingNullIsANoOp) {
  LimitedHostMemory host;
  CachingAllocator alloc(host.Raw());
  EXPECT_EQ(alloc.Allocate(0), nullptr);
  alloc.Free(nullptr);
  EXPECT_EQ(alloc.stats().raw_allocations, 0);
}

TEST(CachingAllocatorTest, OutOfMemoryEmptiesTheCacheAndRetries) {
  LimitedHostMemory host;
  host.limit = 10 << 20;
  CachingAllocator alloc(host.Raw());
  void* a = alloc.Allocate(6 << 20);  // 6 MiB reserved
  alloc.Free(a);                      // cached, still reserved
  // 8 MiB does not fit beside the cached 6 MiB block, and 6 MiB cannot serve it.
  void* b = alloc.Allocate(8 << 20);
  ASSERT_NE(b, nullptr);
  AllocatorStats st = alloc.stats();
  EXPECT_EQ(st.out_of_memory_retries, 1);
  EXPECT_EQ(st.raw_frees, 1);
  EXPECT_EQ(st.bytes_reserved, size_t{8} << 20);
  EXPECT_EQ(st.peak_bytes_reserved, size_t{8} << 20);
  // Nothing cached to release: the next failure is final.
  EXPECT_THROW(alloc.Allocate(4 << 20), std::bad_alloc);
  alloc.Free(b);
  alloc.ReleaseCached();
  EXPECT_EQ(host.outstanding, 0u);
  EXPECT_EQ(alloc.stats().bytes_reserved, 0u);
}

TEST(CachingAllocatorTest, DestructorReturnsCachedBlocksAndCountsLeaks) {
  LimitedHostMemory host;
  void* leaked = nullptr;
  {
    CachingAllocator alloc(host.Raw());
    alloc.Free(alloc.Allocate(1000));
    leaked = alloc.Allocate(3000);
    EXPECT_EQ(alloc.leaked_blocks(), 1);
  }
  // The cached block went back; the leaked one is still outstanding.
  EXPECT_EQ(host.live.size(), 1u);
  EXPECT_EQ(host.live.count(leaked), 1u);
  host.Raw().free(leaked);
}

TEST(CachingAllocatorDeathTest, FreeingAForeignPointerAborts) {
  LimitedHostMemory host;
  CachingAllocator alloc(host.Raw());
  int not_ours = 0;
  EXPECT_DEATH(alloc.Free(&not_ours), "was not allocated here or was freed twice");
}

}  // namespace
}  // namespace lockstep::kernels::cuda
