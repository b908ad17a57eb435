// lsemu: runs kernels/cuda's hand-written kernels on the host, so their indexing,
// barriers and shared-memory use are exercised on machines without a GPU.
//
// Execution model. A launch runs its blocks one after another; the threads of a block
// are fibers on the calling thread (fiber_switch.h). Between block barriers the warps
// run one after another, each as far as it can: a thread runs until it reaches
// __syncthreads, a warp-level sync (__syncwarp, __shfl_sync) or its end; a warp sync
// releases once every lane named in its mask has arrived or returned, __syncthreads
// once every thread of the block has. Threads that have returned no longer take part,
// as on the hardware. A barrier that can never be released (some threads wait at
// __syncthreads, others at a warp sync) is barrier divergence: the emulator names the
// kernel, the block and the waiting threads, and aborts.
//
// Order. LOCKSTEP_EMU_ORDER=reverse runs blocks, warps and the lanes of each warp in
// reverse order. A kernel whose result changes with the order has a race (a read of
// shared or global memory another thread writes without a barrier between), so the
// suite runs in both orders. Threads are not interleaved within a phase, so a race
// between two writers of one address that each read it back does not show.
//
// Memory. Device memory, dynamic and static shared memory are separate malloc'd blocks
// (AddressSanitizer catches an access past any of them); fresh device memory and the
// shared memory of every block start as 0xFF bytes (NaN), as uninitialised memory would
// hold garbage. Kernel arguments that are pointers must point into cudaMalloc'd or
// pinned memory, and cudaMemcpy's direction must match its pointers. The launch
// checks the limits of a CUDA device of compute capability 9.0 (at most 1024 threads
// per block, grid y/z below 65536, 48 KiB of shared memory without an opt-in) and the
// kernel's __launch_bounds__.
//
// Streams (streams.cc). A launch, copy or memset is queued on its stream and runs only
// when the host has to wait for it (a synchronising call, or a copy into pageable host
// memory) or another stream waits for it through an event or the legacy default
// stream's implicit synchronisation. So a missing synchronisation shows: the host or
// the other stream reads memory the work has not written yet. A launch's arguments are
// taken when it is queued, as CUDA does; its configuration is checked then too.
//
// What it cannot tell: anything about timing, warp-synchronous code that relies on
// lockstep execution without a sync (wrong since Volta anyway), the memory model, or
// the accuracy of CUDA's math library (libm stands in for expf, tanhf, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

struct dim3;
struct CUstream_st;

namespace lsemu {

struct LaunchConfig {
  unsigned int grid[3];
  unsigned int block[3];
  size_t dynamic_shared_bytes;
  unsigned int max_threads = 0;  // the kernel's __launch_bounds__, 0 without
  CUstream_st* stream = nullptr;
  LaunchConfig WithMaxThreads(unsigned int n) const {
    LaunchConfig c = *this;
    c.max_threads = n;
    return c;
  }
};

LaunchConfig Config(dim3 grid, dim3 block, size_t dynamic_shared_bytes = 0,
                    CUstream_st* stream = nullptr);

// Queues body on the configuration's stream, to run once per thread of the grid (see
// the execution model above). An invalid configuration queues nothing and leaves
// cudaErrorInvalidConfiguration (more threads than __launch_bounds__:
// cudaErrorLaunchOutOfResources) for cudaGetLastError, as a failed launch does.
void Launch(const char* kernel, const LaunchConfig& config, std::function<void()> body);

// Queues work on a stream (nullptr: the legacy default stream), for library calls
// that take a stream (the emulated cuBLASLt, cuDNN, NCCL and CUB) and the runtime's own calls.
// Returns the work's ticket, for the emulator's CompleteUpTo.
uint64_t Enqueue(CUstream_st* stream, std::function<void()> work);

// The current block's instance of a static __shared__ variable, one per declaration
// site (key): the same storage for every thread of the block, fresh (0xFF) per block.
void* SharedBytes(const void* key, size_t bytes, size_t alignment);
template <typename T>
T* SharedArray(const void* key) {
  return static_cast<T*>(SharedBytes(key, sizeof(T), alignof(T)));
}
// The launch's dynamic shared memory (extern __shared__), fresh (0xFF) per block.
void* DynamicSharedBytes();
template <typename T>
T* DynamicShared() {
  return static_cast<T*>(DynamicSharedBytes());
}

// Kernel arguments that are pointers must be null or point into memory from cudaMalloc
// or cudaMallocHost (a host pointer in a kernel argument faults on a GPU).
bool IsDeviceAccessible(const void* p);
[[noreturn]] void ReportHostPointer(const char* kernel, int index, const void* p);
template <typename T>
void CheckKernelArg(const char* kernel, int index, const T& value) {
  if constexpr (std::is_pointer_v<T>) {
    if (value != nullptr && !IsDeviceAccessible(value)) ReportHostPointer(kernel, index, value);
  }
}
template <typename... Args>
void CheckKernelArgs(const char* kernel, const Args&... args) {
  int index = 0;
  (CheckKernelArg(kernel, index++, args), ...);
  (void)kernel;
  (void)index;
}

// What cu_to_cc.py makes of Kernel<<<...>>>(args): the arguments are evaluated and
// copied once, at the launch, and `call` (a generic lambda calling the kernel) gets the
// copies when the queued launch runs.
template <typename Call, typename... Args>
void LaunchKernel(const char* kernel, const LaunchConfig& config, Call call, Args... args) {
  CheckKernelArgs(kernel, args...);
  Launch(kernel, config, [call, args...] { call(args...); });
}

// Warp-level sync among the lanes in mask, and the exchange under __shfl_sync.
void WarpSync(unsigned int mask);
uint64_t ShuffleBits(unsigned int mask, uint64_t bits, int src_lane, int width);

}  // namespace lsemu

template <typename T>
T __shfl_sync(unsigned int mask, T value, int src_lane, int width = 32) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "__shfl_sync of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = lsemu::ShuffleBits(mask, bits, src_lane, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
