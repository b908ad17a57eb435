// lsemu's memory: a registry of what cudaMalloc / cudaMallocHost returned, and the
// copies and memsets between them, queued on streams (streams.cc) with CUDA's
// host-synchronisation rules for each kind of copy:
//   - from pageable host memory to device memory: the source is read when the call is
//     made, the write lands when the stream gets to it (CUDA: "may return before the
//     DMA to the final destination has completed"), for cudaMemcpy too (which first
//     waits for the stream's earlier work);
//   - between host memories (pageable or pinned): done when the call returns;
//   - into pageable host memory: the call returns when the copy is done;
//   - device/pinned to device/pinned: cudaMemcpyAsync returns at once; cudaMemcpy
//     waits, except device to device, which it only queues;
//   - cudaMemset of device memory is queued on the legacy default stream.
// cudaFree and cudaFreeHost wait for all queued work, as on CUDA.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

#include "tests/cuda_emulator/runtime_internal.h"

namespace lsemu {
namespace {

struct Allocation {
  size_t bytes;
  Where where;
};

std::mutex registry_mutex;
std::map<uintptr_t, Allocation>& Registry() {
  static auto* registry = new std::map<uintptr_t, Allocation>();
  return *registry;
}

// Fresh device memory holds garbage on a GPU; here it is NaN, so a kernel that reads
// what nobody wrote shows it in its results.
cudaError_t Allocate(void** ptr, size_t bytes, Where where) {
  *ptr = PoisonedBlock(bytes, 256);
  if (*ptr == nullptr) return Fail(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(registry_mutex);
  Registry()[reinterpret_cast<uintptr_t>(*ptr)] = Allocation{bytes, where};
  return cudaSuccess;
}

cudaError_t Release(void* ptr, Where where, const char* call) {
  if (ptr == nullptr) return cudaSuccess;
  CompleteAll();  // no queued work may touch the block afterwards
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = Registry().find(reinterpret_cast<uintptr_t>(ptr));
    if (it == Registry().end() || it->second.where != where) {
      Die(std::string(call) + " of a pointer it did not allocate");
    }
    Registry().erase(it);
  }
  std::free(ptr);
  return cudaSuccess;
}

// cudaMemcpy with a direction its pointers do not have is undefined behaviour in CUDA.
cudaError_t CheckDirection(void* dst, const void* src, cudaMemcpyKind kind) {
  if (kind == cudaMemcpyDefault) return cudaSuccess;
  const bool dst_device = Locate(dst) == Where::kDevice, src_device = Locate(src) == Where::kDevice;
  const bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (dst_device == want_dst && src_device == want_src) return cudaSuccess;
  std::fprintf(stderr, "lsemu: cudaMemcpy kind %d from %s to %s\n", static_cast<int>(kind),
               Name(Locate(src)), Name(Locate(dst)));
  return Fail(cudaErrorInvalidValue);
}

// Queues a copy on `stream` and waits for it as CUDA's rules say (see the top);
// `blocking_call`: cudaMemcpy rather than cudaMemcpyAsync.
cudaError_t Copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream,
                 bool blocking_call) {
  if (bytes == 0) return cudaSuccess;
  const cudaError_t err = CheckDirection(dst, src, kind);
  if (err != cudaSuccess) return err;
  const Where from = Locate(src), to = Locate(dst);
  const bool host_to_host = from != Where::kDevice && to != Where::kDevice;  // fully synchronous
  if (from == Where::kHost && to == Where::kDevice) {
    // cudaMemcpy: "a stream sync is performed before the copy is initiated".
    if (blocking_call) cudaStreamSynchronize(stream);
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
    Enqueue(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
    return cudaSuccess;
  }
  const uint64_t ticket = Enqueue(stream, [dst, src, bytes] { std::memcpy(dst, src, bytes); });
  const bool device_to_device = from == Where::kDevice && to == Where::kDevice;
  if (to == Where::kHost || host_to_host || (blocking_call && !device_to_device)) {
    CompleteUpTo(stream, ticket);
  }
  return cudaSuccess;
}

cudaError_t Memset(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (Locate(ptr) != Where::kDevice) {
    std::fprintf(stderr, "lsemu: cudaMemset of %s\n", Name(Locate(ptr)));
    return Fail(cudaErrorInvalidValue);
  }
  Enqueue(stream, [ptr, value, bytes] { std::memset(ptr, value, bytes); });
  return cudaSuccess;
}

}  // namespace

namespace {
// The live block that starts at or before v (v need not be inside it), or null; the
// caller holds registry_mutex.
const Allocation* BlockAtOrBefore(uintptr_t v, uintptr_t* start) {
  auto it = Registry().upper_bound(v);
  if (it == Registry().begin()) return nullptr;
  --it;
  *start = it->first;
  return &it->second;
}
}  // namespace

Where Locate(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(registry_mutex);
  uintptr_t start = 0;
  const Allocation* block = BlockAtOrBefore(v, &start);
  return block != nullptr && v - start < std::max<size_t>(block->bytes, 1) ? block->where : Where::kHost;
}

bool InOneAllocation(const void* p, size_t bytes) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(registry_mutex);
  uintptr_t start = 0;
  const Allocation* block = BlockAtOrBefore(v, &start);
  return block != nullptr && bytes <= block->bytes && v - start <= block->bytes - bytes;
}

namespace {
std::mutex handles_mutex;
std::set<const void*>& Handles() {
  static auto* handles = new std::set<const void*>();
  return *handles;
}
}  // namespace

void RegisterHandle(const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mutex);
  Handles().insert(handle);
}

void ForgetHandle(const void* handle) {
  std::lock_guard<std::mutex> lock(handles_mutex);
  Handles().erase(handle);
}

void RequireHandle(const void* handle, const char* call, const char* what) {
  bool live = false;
  {
    std::lock_guard<std::mutex> lock(handles_mutex);
    live = Handles().count(handle) > 0;
  }
  if (!live) {
    std::ostringstream s;
    s << call << ": " << what << " " << handle << " was never created or is already destroyed";
    Die(s.str());
  }
}

const char* Name(Where w) {
  return w == Where::kDevice ? "device memory" : w == Where::kPinned ? "pinned host memory" : "host memory";
}

bool IsDeviceAccessible(const void* p) { return Locate(p) != Where::kHost; }

void ReportHostPointer(const char* kernel, int index, const void* p) {
  std::ostringstream s;
  s << "kernel " << kernel << ": argument " << index << " (" << p
    << ") points to host memory, not to memory from cudaMalloc or cudaMallocHost";
  Die(s.str());
}

}  // namespace lsemu

cudaError_t cudaMalloc(void** ptr, size_t bytes) { return lsemu::Allocate(ptr, bytes, lsemu::Where::kDevice); }
cudaError_t cudaFree(void* ptr) { return lsemu::Release(ptr, lsemu::Where::kDevice, "cudaFree"); }
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return lsemu::Allocate(ptr, bytes, lsemu::Where::kPinned); }
cudaError_t cudaFreeHost(void* ptr) { return lsemu::Release(ptr, lsemu::Where::kPinned, "cudaFreeHost"); }
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) { return lsemu::Memset(ptr, value, bytes, nullptr); }
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  return lsemu::Memset(ptr, value, bytes, stream);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return lsemu::Copy(dst, src, bytes, kind, nullptr, /*blocking_call=*/true);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return lsemu::Copy(dst, src, bytes, kind, stream, /*blocking_call=*/false);
}
