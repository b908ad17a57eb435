// HostStagingPool on the CPU backend (AllocateHost is plain memory there; the pool's
// bookkeeping is the same on a GPU, where the blocks are page-locked).
#include "runtime/core/host_staging_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <new>
#include <thread>
#include <vector>

namespace lockstep {
namespace {

TEST(HostStagingPool, AReleasedBlockIsReusedForTheSameSize) {
  auto backend = CreateCpuBackend();
  HostStagingPool pool(backend.get());
  char* first = nullptr;
  {
    std::shared_ptr<char> block = pool.Acquire(1000);
    first = block.get();
    std::memset(first, 7, 1000);  // all 1000 bytes are usable (ASan would say otherwise)
    EXPECT_EQ(pool.stats().bytes_in_use, 1000u);
  }
  EXPECT_EQ(pool.stats().bytes_in_use, 0u);
  EXPECT_EQ(pool.stats().bytes_cached, 1000u);
  std::shared_ptr<char> again = pool.Acquire(1000);
  EXPECT_EQ(again.get(), first);
  EXPECT_EQ(pool.stats().allocations, 1u);
  EXPECT_EQ(pool.Acquire(0), nullptr);
}

TEST(HostStagingPool, BestFitAndNoMoreThanTwiceTheSize) {
  auto backend = CreateCpuBackend();
  HostStagingPool pool(backend.get());
  char *big = nullptr, *mid = nullptr;
  {
    auto a = pool.Acquire(4000), b = pool.Acquire(1500);
    big = a.get();
    mid = b.get();
  }
  ASSERT_EQ(pool.stats().allocations, 2u);
  auto fit = pool.Acquire(1200);  // 1500 fits better than 4000
  EXPECT_EQ(fit.get(), mid);
  auto small = pool.Acquire(1000);  // only 4000 is left: more than twice 1000
  EXPECT_NE(small.get(), big);
  EXPECT_EQ(pool.stats().allocations, 3u);
  auto half = pool.Acquire(2000);  // 4000 is exactly twice
  EXPECT_EQ(half.get(), big);
  EXPECT_EQ(pool.stats().allocations, 3u);
  EXPECT_EQ(pool.stats().bytes_in_use, 1500u + 1000u + 4000u);
}

TEST(HostStagingPool, TheCacheStaysWithinTwiceThePeakInUse) {
  auto backend = CreateCpuBackend();
  HostStagingPool pool(backend.get());
  // One block at a time, each larger than the last: none fits the next request, so
  // every one is cached until the bound (2 x the peak in use) evicts the oldest.
  for (size_t bytes : {1000u, 2100u, 4300u, 5000u}) {
    pool.Acquire(bytes);
    const HostStagingStats s = pool.stats();
    EXPECT_EQ(s.peak_bytes_in_use, bytes);
    EXPECT_LE(s.bytes_cached, 2 * s.peak_bytes_in_use) << bytes;
  }
  // 1000 + 2100 + 4300 + 5000 > 2 x 5000: the oldest two went, the newest stay.
  EXPECT_EQ(pool.stats().bytes_cached, 4300u + 5000u);
  EXPECT_EQ(pool.stats().allocations, 4u);
}

// An allocation that fails throws as AllocateHost does and leaves the books as they were.
TEST(HostStagingPool, AFailedAllocationThrowsAndCountsNothing) {
  auto backend = CreateCpuBackend();
  HostStagingPool pool(backend.get());
  auto held = pool.Acquire(100);
  EXPECT_THROW(pool.Acquire(size_t{1} << 62), std::bad_alloc);
  const HostStagingStats s = pool.stats();
  EXPECT_EQ(s.allocations, 1u);
  EXPECT_EQ(s.bytes_in_use, 100u);
}

TEST(HostStagingPool, ThreadsAcquiringAndReleasingKeepTheBooksStraight) {
  auto backend = CreateCpuBackend();
  HostStagingPool pool(backend.get());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 2000; ++i) {
        const size_t bytes = 64 * static_cast<size_t>(1 + (i + t) % 5);
        auto block = pool.Acquire(bytes);
        std::memset(block.get(), t, bytes);
      }
    });
  }
  for (auto& th : threads) th.join();
  const HostStagingStats s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_LE(s.bytes_cached, 2 * s.peak_bytes_in_use);
  EXPECT_LE(s.peak_bytes_in_use, 4u * 64 * 5);
}

}  // namespace
}  // namespace lockstep
