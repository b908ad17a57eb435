// A caching device allocator: freed blocks are kept and handed out again, so a
// training step that allocates the same sizes every time calls cudaMalloc only in
// its first step (no cudaMalloc, and no implicit device synchronisation of
// cudaFree, in the steady state). Statistics report bytes in use and reserved, and
// their peaks, for the benchmarks' peak-memory columns.
//
// Blocks are reused in stream order: the allocator serves ONE stream (the backend's
// compute stream). A block freed while queued work still uses it is safe to hand
// out again only to work queued later on that same stream; memory another stream
// reads must stay allocated until that stream is joined.
//
// The bookkeeping is independent of CUDA (the raw allocate/free functions are
// injected), so it is tested on machines without a GPU. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace lockstep::kernels::cuda {

struct AllocatorStats {
  size_t bytes_in_use = 0;         // handed out and not yet freed (rounded sizes)
  size_t peak_bytes_in_use = 0;
  size_t bytes_reserved = 0;       // obtained from the raw allocator: in use + cached
  size_t peak_bytes_reserved = 0;
  int64_t raw_allocations = 0;     // cudaMalloc calls that succeeded
  int64_t raw_frees = 0;
  int64_t cache_hits = 0;          // Allocate calls served from the cache
  int64_t out_of_memory_retries = 0;  // raw allocations retried after emptying the cache
};

// The raw allocator: allocate returns nullptr when the device is out of memory.
// reused (optional) is called with a block and its size when the cache hands it out
// again.
struct RawMemory {
  std::function<void*(size_t)> allocate;
  std::function<void(void*)> free;
  std::function<void(void*, size_t)> reused;
};

// cudaMalloc / cudaFree on the device current at call time, for blocks used on
// `stream` (the stream the allocator serves). cudaErrorMemoryAllocation becomes
// nullptr; any other CUDA error aborts with the device named.
RawMemory CudaRawMemory(CUstream_st* stream);

class CachingAllocator {
 public:
  explicit CachingAllocator(RawMemory raw);
  // Returns every cached block to the raw allocator. Blocks still in use are not
  // freed (their owners may outlive the allocator by a bug); they are counted in
  // leaked_blocks() for the caller to report.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // nullptr for 0 bytes. A block is 256-byte aligned (cudaMalloc's guarantee). When
  // the raw allocator fails, the cache is emptied and the allocation retried once;
  // then std::bad_alloc is thrown (after a message naming the request and the
  // statistics on stderr).
  void* Allocate(size_t bytes);
  // p must come from Allocate of this allocator (aborts otherwise); nullptr is a no-op.
  void Free(void* p);
  // Gives every cached (free) block back to the raw allocator.
  void ReleaseCached();

  AllocatorStats stats() const;
  void ResetPeaks();
  int64_t leaked_blocks() const;

  // Sizes are rounded so that similar requests share blocks: up to 1 MiB to a
  // multiple of 512 bytes, above it to a multiple of 2 MiB.
  static size_t RoundedSize(size_t bytes);
  // A cached block of `block` bytes serves a request rounded to `rounded` when it is
  // not wastefully larger: the same size below 1 MiB, at most 1.25x above it.
  static bool Fits(size_t block, size_t rounded);

 private:
  void ReleaseCachedLocked();

  RawMemory raw_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> cached_;        // free blocks by size
  std::unordered_map<void*, size_t> in_use_;   // block -> rounded size
  AllocatorStats stats_;
};

}  // namespace lockstep::kernels::cuda
