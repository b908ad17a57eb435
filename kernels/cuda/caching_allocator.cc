#include "kernels/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <iostream>
#include <new>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr size_t kSmallLimit = size_t{1} << 20;
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

RawMemory CudaRawMemory(CUstream_st* stream) {
  RawMemory raw;
  raw.allocate = [](size_t bytes) -> void* {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky; clear it so later checks do not see it
      return nullptr;
    }
    LS_CUDA_CHECK(err);
    return p;
  };
  raw.free = [](void* p) { LS_CUDA_CHECK(cudaFree(p)); };
#if defined(LOCKSTEP_EMULATED_CUDA)
  // Under the CUDA emulator (tests/cuda_emulator) a reused block becomes NaN like a
  // fresh one there, so code that reads a block before writing it shows in its
  // results. The memset is queued on the allocator's stream: after the previous
  // owner's queued work, before the new owner's. (Not on a GPU: it costs a pass.)
  raw.reused = [stream](void* p, size_t bytes) {
    LS_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, bytes, stream));
  };
#else
  (void)stream;
#endif
  return raw;
}

size_t CachingAllocator::RoundedSize(size_t bytes) {
  if (bytes <= kSmallLimit) return RoundUp(std::max<size_t>(bytes, 1), kSmallRound);
  return RoundUp(bytes, kLargeRound);
}

bool CachingAllocator::Fits(size_t block, size_t rounded) {
  if (block < rounded) return false;
  if (rounded <= kSmallLimit) return block == rounded;
  return block <= rounded + rounded / 4;
}

CachingAllocator::CachingAllocator(RawMemory raw) : raw_(std::move(raw)) {
  LS_CHECK(raw_.allocate && raw_.free) << "CachingAllocator: raw allocate/free missing";
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  ReleaseCachedLocked();
}

void* CachingAllocator::Allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t rounded = RoundedSize(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* block = nullptr;
  size_t block_size = rounded;
  auto it = cached_.lower_bound(rounded);  // the smallest cached block that is large enough
  if (it != cached_.end() && Fits(it->first, rounded)) {
    block = it->second;
    block_size = it->first;
    cached_.erase(it);
    ++stats_.cache_hits;
    if (raw_.reused) raw_.reused(block, block_size);
  } else {
    block = raw_.allocate(rounded);
    if (block == nullptr && !cached_.empty()) {
      // Cached blocks of other sizes may be what stands in the way.
      ++stats_.out_of_memory_retries;
      ReleaseCachedLocked();
      block = raw_.allocate(rounded);
    }
    if (block == nullptr) {
      std::cerr << "CachingAllocator: out of device memory allocating " << bytes << " bytes ("
                << rounded << " rounded); in use " << stats_.bytes_in_use << ", reserved "
                << stats_.bytes_reserved << ", peak in use " << stats_.peak_bytes_in_use
                << std::endl;
      throw std::bad_alloc();
    }
    ++stats_.raw_allocations;
    stats_.bytes_reserved += rounded;
    stats_.peak_bytes_reserved = std::max(stats_.peak_bytes_reserved, stats_.bytes_reserved);
  }
  in_use_.emplace(block, block_size);
  stats_.bytes_in_use += block_size;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  return block;
}

void CachingAllocator::Free(void* p) {
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(p);
  LS_CHECK(it != in_use_.end()) << "CachingAllocator::Free: " << p
                                << " was not allocated here or was freed twice";
  stats_.bytes_in_use -= it->second;
  cached_.emplace(it->second, p);
  in_use_.erase(it);
}

void CachingAllocator::ReleaseCached() {
  std::lock_guard<std::mutex> lock(mu_);
  ReleaseCachedLocked();
}

void CachingAllocator::ReleaseCachedLocked() {
  for (const auto& [size, block] : cached_) {
    raw_.free(block);
    ++stats_.raw_frees;
    stats_.bytes_reserved -= size;
  }
  cached_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::ResetPeaks() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
  stats_.peak_bytes_reserved = stats_.bytes_reserved;
}

int64_t CachingAllocator::leaked_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(in_use_.size());
}

}  // namespace lockstep::kernels::cuda
