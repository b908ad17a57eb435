// The Backend defaults that are not pure virtual, and HostBuffer.
#include "runtime/core/backend.h"

#include <cstdlib>
#include <new>

namespace lockstep {

void* Backend::AllocateHost(size_t bytes) {
  if (bytes == 0) return nullptr;
  // 64-byte alignment: whole cache lines, and AVX-512 loads never split.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void Backend::FreeHost(void* p) { std::free(p); }

void* HostBuffer::Reserve(size_t bytes) {
  if (bytes > bytes_) {
    backend_->FreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
    data_ = backend_->AllocateHost(bytes);
    bytes_ = bytes;
  }
  return data_;
}

}  // namespace lockstep
