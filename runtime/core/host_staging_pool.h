// HostStagingPool: host buffers from Backend::AllocateHost (page-locked on a GPU) for
// staging collectives, kept for reuse. Page-locked memory is slow to allocate
// (cudaMallocHost maps and pins pages) but fast to copy through (DMA without a bounce
// buffer), so a data-parallel step, whose buckets have the same sizes every step,
// must reuse its buffers rather than allocate them: after the first step, Acquire
// allocates nothing.
//
// A block goes back to the pool when the last copy of its shared_ptr is dropped (the
// collective's handle holds it). Reuse is best fit among cached blocks of at most
// twice the size asked for, so a small request does not pin a large block. The cache
// holds at most twice the most bytes that were ever in use at once: past that, the
// least recently released blocks are freed. Thread-safe; the pool must outlive its
// blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "runtime/core/backend.h"

namespace lockstep {

struct HostStagingStats {
  size_t allocations = 0;      // blocks AllocateHost gave so far
  size_t bytes_in_use = 0;     // held by live blocks
  size_t bytes_cached = 0;     // released, kept for reuse
  size_t peak_bytes_in_use = 0;
};

class HostStagingPool {
 public:
  explicit HostStagingPool(Backend* backend) : backend_(backend) {}
  ~HostStagingPool();  // frees the cached blocks
  HostStagingPool(const HostStagingPool&) = delete;
  HostStagingPool& operator=(const HostStagingPool&) = delete;

  // A block of at least `bytes` (contents unspecified); null for 0 bytes.
  // Throws std::bad_alloc as AllocateHost does.
  std::shared_ptr<char> Acquire(size_t bytes);
  HostStagingStats stats() const;

 private:
  void Release(char* p, size_t capacity);

  Backend* backend_;
  mutable std::mutex mu_;
  struct Cached {
    char* block;
    uint64_t released;  // release_tick_ when it came back
  };
  std::multimap<size_t, Cached> cached_;  // by capacity
  uint64_t release_tick_ = 0;
  HostStagingStats stats_;
};

}  // namespace lockstep
