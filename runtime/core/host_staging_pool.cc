#include "runtime/core/host_staging_pool.h"

#include <algorithm>
#include <vector>

namespace lockstep {

HostStagingPool::~HostStagingPool() {
  for (auto& [capacity, c] : cached_) backend_->FreeHost(c.block);
}

std::shared_ptr<char> HostStagingPool::Acquire(size_t bytes) {
  if (bytes == 0) return nullptr;
  char* block = nullptr;
  size_t capacity = bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto fit = cached_.lower_bound(bytes);
    if (fit != cached_.end() && fit->first / 2 <= bytes) {
      capacity = fit->first;
      block = fit->second.block;
      cached_.erase(fit);
      stats_.bytes_cached -= capacity;
    } else {
      ++stats_.allocations;
    }
    stats_.bytes_in_use += capacity;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  }
  if (block == nullptr) {
    try {
      block = static_cast<char*>(backend_->AllocateHost(capacity));  // outside the lock: slow
    } catch (...) {  // nothing was allocated: undo the books
      std::lock_guard<std::mutex> lock(mu_);
      stats_.bytes_in_use -= capacity;
      --stats_.allocations;
      throw;
    }
  }
  return std::shared_ptr<char>(block, [this, capacity](char* p) { Release(p, capacity); });
}

void HostStagingPool::Release(char* p, size_t capacity) {
  std::vector<char*> evicted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_in_use -= capacity;
    cached_.emplace(capacity, Cached{p, ++release_tick_});
    stats_.bytes_cached += capacity;
    // Least recently released first (the cache holds a few blocks per bucket: a scan).
    while (stats_.bytes_cached > 2 * stats_.peak_bytes_in_use) {
      auto oldest = cached_.begin();
      for (auto it = cached_.begin(); it != cached_.end(); ++it) {
        if (it->second.released < oldest->second.released) oldest = it;
      }
      stats_.bytes_cached -= oldest->first;
      evicted.push_back(oldest->second.block);
      cached_.erase(oldest);
    }
  }
  for (char* block : evicted) backend_->FreeHost(block);
}

HostStagingStats HostStagingPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace lockstep
