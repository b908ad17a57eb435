// lsemu's scheduler and runtime calls (see include/lsemu/emulator.h for the model).
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cuda_emulator/fiber_switch.h"
#include "tests/cuda_emulator/runtime_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define LSEMU_ASAN 1
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace lsemu {
namespace {

constexpr unsigned int kMaxThreadsPerBlock = 1024;
constexpr size_t kSharedBytesWithoutOptIn = 48 * 1024;
// Kernels' frames are small. A guard page below each stack turns an overflow into a
// SIGSEGV instead of a write into the neighbouring stack.
constexpr size_t kFiberStackBytes = 64 * 1024;
constexpr size_t kGuardBytes = 4096;
[[maybe_unused]] constexpr size_t kTopUnpoisonBytes = 8192;
constexpr int kWarp = 32;

thread_local cudaError_t last_error = cudaSuccess;
// Set while this host thread runs a kernel's threads.
thread_local bool inside_kernel = false;

enum class Waiting { kRunnable, kBlockBarrier, kWarpSync, kDone };

struct Fiber {
  void* stack_pointer = nullptr;  // saved while the fiber is switched out
  char* stack = nullptr;
  Waiting state = Waiting::kRunnable;
  unsigned int warp_mask = 0;
#if defined(LSEMU_ASAN)
  void* fake_stack = nullptr;
#endif
};

// The state of the launch in progress on this thread.
struct Execution {
  const char* kernel = nullptr;
  LaunchConfig config{};
  const std::function<void()>* body = nullptr;
  unsigned int threads = 0;
  std::vector<Fiber> fibers;
  int current = -1;  // the running fiber, -1 in the scheduler
  void* scheduler_stack_pointer = nullptr;
#if defined(LSEMU_ASAN)
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
#endif
  void* dynamic_shared = nullptr;
  std::map<const void*, void*> shared;         // static __shared__, per block
  size_t shared_bytes = 0;                     // static + dynamic, this block
  std::vector<uint64_t> shuffle_slots;
};

// The launch in progress; one at a time per process, as the coordinates are global.
std::atomic<Execution*> running{nullptr};

// Fiber stacks, mapped once per thread index and reused by every later launch.
thread_local std::vector<char*> stack_pool;

char* FiberStack(unsigned int t) {
  while (stack_pool.size() <= t) {
    void* p = mmap(nullptr, kGuardBytes + kFiberStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED || mprotect(p, kGuardBytes, PROT_NONE) != 0) Die("cannot map a fiber stack");
    stack_pool.push_back(static_cast<char*>(p) + kGuardBytes);
  }
  return stack_pool[t];
}

Execution& Current(const char* what) {
  Execution* ex = running.load();
  if (ex == nullptr || ex->current < 0) Die(std::string(what) + " called outside a kernel");
  return *ex;
}

void* SharedMemoryBlock(size_t bytes, size_t alignment) {
  void* p = PoisonedBlock(bytes, alignment);
  if (p == nullptr) Die("out of host memory for shared memory");
  return p;
}

std::string BlockName(const Execution& ex) {
  std::ostringstream s;
  s << "kernel " << ex.kernel << " block (" << blockIdx.x << "," << blockIdx.y << ","
    << blockIdx.z << ") of grid (" << gridDim.x << "," << gridDim.y << "," << gridDim.z
    << "), block size (" << blockDim.x << "," << blockDim.y << "," << blockDim.z << ")";
  return s.str();
}

void SetThreadIndex(const Execution& ex, unsigned int linear) {
  const unsigned int bx = ex.config.block[0], by = ex.config.block[1];
  threadIdx.x = linear % bx;
  threadIdx.y = (linear / bx) % by;
  threadIdx.z = linear / (bx * by);
}

// Switches from the running fiber back to the scheduler; returns when resumed.
void YieldToScheduler(Execution& ex, Waiting why) {
  Fiber& f = ex.fibers[static_cast<size_t>(ex.current)];
  f.state = why;
#if defined(LSEMU_ASAN)
  __sanitizer_start_switch_fiber(why == Waiting::kDone ? nullptr : &f.fake_stack,
                                 ex.scheduler_stack_bottom, ex.scheduler_stack_size);
#endif
  lsemu_fiber_switch(&f.stack_pointer, ex.scheduler_stack_pointer);
#if defined(LSEMU_ASAN)
  __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
}

void FiberMain() {
  Execution& ex = *running.load();
#if defined(LSEMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &ex.scheduler_stack_bottom, &ex.scheduler_stack_size);
#endif
  (*ex.body)();
  YieldToScheduler(ex, Waiting::kDone);
  Die("a finished fiber was resumed");
}

void Resume(Execution& ex, unsigned int t) {
  Fiber& f = ex.fibers[t];
  f.state = Waiting::kRunnable;
  ex.current = static_cast<int>(t);
  SetThreadIndex(ex, t);
  void* scheduler_fake_stack = nullptr;
#if defined(LSEMU_ASAN)
  __sanitizer_start_switch_fiber(&scheduler_fake_stack, f.stack, kFiberStackBytes);
#endif
  lsemu_fiber_switch(&ex.scheduler_stack_pointer, f.stack_pointer);
#if defined(LSEMU_ASAN)
  __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#endif
  (void)scheduler_fake_stack;
  ex.current = -1;
}

std::string DescribeWaits(const Execution& ex) {
  std::ostringstream s;
  const char* names[] = {"runnable", "at __syncthreads", "at a warp sync", "returned"};
  // Runs of consecutive threads in the same state, e.g. "threads 0-31 at __syncthreads".
  unsigned int begin = 0;
  for (unsigned int t = 1; t <= ex.threads; ++t) {
    if (t < ex.threads && ex.fibers[t].state == ex.fibers[begin].state) continue;
    s << "\n  threads " << begin << "-" << (t - 1) << " "
      << names[static_cast<int>(ex.fibers[begin].state)];
    begin = t;
  }
  return s.str();
}

// Releases the warp's lanes waiting at a warp sync once every lane named in their mask
// has arrived; lanes that returned or lie past the end of the block count as arrived
// (CUDA: "all non-exited threads named in mask"). True if it released any.
bool TryReleaseWarp(Execution& ex, unsigned int warp_begin) {
  const unsigned int warp_end = std::min(ex.threads, warp_begin + kWarp);
  unsigned int mask = 0;
  bool any = false;
  for (unsigned int t = warp_begin; t < warp_end; ++t) {
    if (ex.fibers[t].state != Waiting::kWarpSync) continue;
    if (any && ex.fibers[t].warp_mask != mask) {
      Die(BlockName(ex) + ": lanes of one warp sync with different masks");
    }
    mask = ex.fibers[t].warp_mask;
    any = true;
  }
  if (!any) return false;
  for (unsigned int t = warp_begin; t < warp_end; ++t) {
    const bool named = (mask >> (t - warp_begin)) & 1u;
    const Waiting s = ex.fibers[t].state;
    if (named && s != Waiting::kWarpSync && s != Waiting::kDone) return false;
  }
  for (unsigned int t = warp_begin; t < warp_end; ++t) {
    if (ex.fibers[t].state == Waiting::kWarpSync) ex.fibers[t].state = Waiting::kRunnable;
  }
  return true;
}

// Runs a block between block barriers warp by warp: each warp goes as far as it can
// (through its warp syncs) before the next one starts, as warps are independent between
// __syncthreads. So a warp sync standing in for a block barrier shows: the later warps
// have not written yet.
void RunBlock(Execution& ex) {
  for (unsigned int t = 0; t < ex.threads; ++t) {
    Fiber& f = ex.fibers[t];
    f.stack = FiberStack(t);
#if defined(LSEMU_ASAN)
    // The previous fiber on this stack ended inside FiberMain's switch, whose frames
    // never returned to unpoison their redzones.
    __asan_unpoison_memory_region(f.stack + kFiberStackBytes - kTopUnpoisonBytes,
                                  kTopUnpoisonBytes);
#endif
    f.stack_pointer = PrepareFiberStack(f.stack, kFiberStackBytes, FiberMain);
    f.state = Waiting::kRunnable;
  }
  const bool reverse = ReverseOrder();
  const unsigned int warps = (ex.threads + kWarp - 1) / kWarp;
  for (;;) {
    for (unsigned int wi = 0; wi < warps; ++wi) {
      const unsigned int warp_begin = (reverse ? warps - 1 - wi : wi) * kWarp;
      const unsigned int lanes = std::min(ex.threads - warp_begin, static_cast<unsigned int>(kWarp));
      do {
        for (unsigned int li = 0; li < lanes; ++li) {
          const unsigned int t = warp_begin + (reverse ? lanes - 1 - li : li);
          if (ex.fibers[t].state == Waiting::kRunnable) Resume(ex, t);
        }
      } while (TryReleaseWarp(ex, warp_begin));
    }
    bool all_done = true, all_at_barrier_or_done = true;
    for (unsigned int t = 0; t < ex.threads; ++t) {
      const Waiting s = ex.fibers[t].state;
      if (s != Waiting::kDone) all_done = false;
      if (s != Waiting::kDone && s != Waiting::kBlockBarrier) all_at_barrier_or_done = false;
    }
    if (all_done) return;
    if (!all_at_barrier_or_done) {
      Die(BlockName(ex) + ": barrier divergence, no thread can go on:" + DescribeWaits(ex));
    }
    for (Fiber& f : ex.fibers) {
      if (f.state == Waiting::kBlockBarrier) f.state = Waiting::kRunnable;
    }
  }
}

// cudaSuccess, or the error a GPU gives for this launch with the reason in *why.
cudaError_t CheckConfig(const LaunchConfig& c, std::string* why) {
  const uint64_t threads = uint64_t{c.block[0]} * c.block[1] * c.block[2];
  std::ostringstream s;
  if (c.block[0] == 0 || c.block[1] == 0 || c.block[2] == 0 || c.grid[0] == 0 || c.grid[1] == 0 ||
      c.grid[2] == 0) {
    s << "a zero grid or block dimension";
  } else if (threads > kMaxThreadsPerBlock || c.block[0] > kMaxThreadsPerBlock ||
             c.block[1] > kMaxThreadsPerBlock || c.block[2] > 64) {
    s << threads << " threads per block (at most 1024; z at most 64)";
  } else if (c.grid[0] > 0x7fffffffu || c.grid[1] > 65535 || c.grid[2] > 65535) {
    s << "grid (" << c.grid[0] << "," << c.grid[1] << "," << c.grid[2] << ") too large";
  } else if (c.dynamic_shared_bytes > kSharedBytesWithoutOptIn) {
    s << c.dynamic_shared_bytes << " bytes of dynamic shared memory (48 KiB without opt-in)";
  } else if (c.max_threads > 0 && threads > c.max_threads) {
    *why = std::to_string(threads) + " threads per block above its __launch_bounds__(" +
           std::to_string(c.max_threads) + ")";
    return cudaErrorLaunchOutOfResources;
  } else {
    return cudaSuccess;
  }
  *why = s.str();
  return cudaErrorInvalidConfiguration;
}

// Runs a launch whose configuration CheckConfig accepted, when its stream gets to it.
void RunGrid(const char* kernel, const LaunchConfig& config, const std::function<void()>& body) {
  if (running.load() != nullptr) Die(std::string("launch of ") + kernel + " while another launch runs");
  Execution ex;
  ex.kernel = kernel;
  ex.config = config;
  ex.body = &body;
  ex.threads = config.block[0] * config.block[1] * config.block[2];
  ex.fibers.resize(ex.threads);
  ex.shuffle_slots.assign(ex.threads, 0);
  gridDim = dim3(config.grid[0], config.grid[1], config.grid[2]);
  blockDim = dim3(config.block[0], config.block[1], config.block[2]);
  running.store(&ex);
  inside_kernel = true;
  const uint64_t blocks = uint64_t{config.grid[0]} * config.grid[1] * config.grid[2];
  const bool reverse = ReverseOrder();
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t b = reverse ? blocks - 1 - i : i;
    blockIdx.x = static_cast<unsigned int>(b % config.grid[0]);
    blockIdx.y = static_cast<unsigned int>((b / config.grid[0]) % config.grid[1]);
    blockIdx.z = static_cast<unsigned int>(b / (uint64_t{config.grid[0]} * config.grid[1]));
    ex.dynamic_shared = SharedMemoryBlock(config.dynamic_shared_bytes, 16);
    ex.shared_bytes = config.dynamic_shared_bytes;
    RunBlock(ex);
    std::free(ex.dynamic_shared);
    ex.dynamic_shared = nullptr;
    for (auto& entry : ex.shared) std::free(entry.second);
    ex.shared.clear();
  }
  inside_kernel = false;
  running.store(nullptr);
}

}  // namespace

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "lsemu: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

cudaError_t Fail(cudaError_t err) {
  last_error = err;
  return err;
}

bool ReverseOrder() {
  static const bool reverse = [] {
    const char* v = std::getenv("LOCKSTEP_EMU_ORDER");
    return v != nullptr && std::string(v) == "reverse";
  }();
  return reverse;
}

void* PoisonedBlock(size_t bytes, size_t alignment) {
  void* p = nullptr;
  if (posix_memalign(&p, alignment, bytes) != 0) return nullptr;
  if (bytes > 0) std::memset(p, 0xFF, bytes);
  return p;
}

LaunchConfig Config(dim3 grid, dim3 block, size_t dynamic_shared_bytes, CUstream_st* stream) {
  return LaunchConfig{{grid.x, grid.y, grid.z}, {block.x, block.y, block.z}, dynamic_shared_bytes, 0, stream};
}

void Launch(const char* kernel, const LaunchConfig& config, std::function<void()> body) {
  if (inside_kernel) Die(std::string("launch of ") + kernel + " inside a kernel");
  std::string why;
  const cudaError_t refused = CheckConfig(config, &why);
  if (refused != cudaSuccess) {
    if (std::getenv("LOCKSTEP_EMU_QUIET") == nullptr) {
      std::fprintf(stderr, "lsemu: launch of %s refused: %s\n", kernel, why.c_str());
    }
    Fail(refused);
    return;
  }
  Enqueue(config.stream, [kernel, config, body = std::move(body)] { RunGrid(kernel, config, body); });
}

void* SharedBytes(const void* key, size_t bytes, size_t alignment) {
  Execution& ex = Current("a __shared__ declaration");
  auto it = ex.shared.find(key);
  if (it != ex.shared.end()) return it->second;
  ex.shared_bytes += bytes;
  if (ex.shared_bytes > kSharedBytesWithoutOptIn) {
    Die(BlockName(ex) + ": " + std::to_string(ex.shared_bytes) +
        " bytes of shared memory (static + dynamic), above the 48 KiB a launch gets without opt-in");
  }
  void* data = SharedMemoryBlock(bytes, std::max(alignment, sizeof(void*)));
  ex.shared.emplace(key, data);
  return data;
}

void* DynamicSharedBytes() {
  // Without dynamic shared memory in the launch this is a 0-byte block: any access to
  // it is reported.
  return Current("extern __shared__").dynamic_shared;
}

void WarpSync(unsigned int mask) {
  Execution& ex = Current("a warp sync");
  const unsigned int lane = static_cast<unsigned int>(ex.current) % kWarp;
  if (((mask >> lane) & 1u) == 0) Die(BlockName(ex) + ": a lane syncs under a mask without it");
  ex.fibers[static_cast<size_t>(ex.current)].warp_mask = mask;
  YieldToScheduler(ex, Waiting::kWarpSync);
}

uint64_t ShuffleBits(unsigned int mask, uint64_t bits, int src_lane, int width) {
  Execution& ex = Current("__shfl_sync");
  if (width <= 0 || width > kWarp || (width & (width - 1)) != 0) {
    Die(BlockName(ex) + ": __shfl_sync width " + std::to_string(width) +
        " is not a power of two up to 32");
  }
  const unsigned int me = static_cast<unsigned int>(ex.current);
  const unsigned int lane = me % kWarp;
  ex.shuffle_slots[me] = bits;
  WarpSync(mask);
  const unsigned int segment = lane / static_cast<unsigned int>(width) * static_cast<unsigned int>(width);
  const unsigned int source_lane = segment + static_cast<unsigned int>(src_lane) % static_cast<unsigned int>(width);
  if (((mask >> source_lane) & 1u) == 0) {
    Die(BlockName(ex) + ": __shfl_sync reads lane " + std::to_string(source_lane) +
        ", which is not in the mask");
  }
  const unsigned int source = me - lane + source_lane;
  if (source >= ex.threads || ex.fibers[source].state == Waiting::kDone) {
    Die(BlockName(ex) + ": __shfl_sync reads lane " + std::to_string(source_lane) +
        ", which has exited or is past the end of the block");
  }
  const uint64_t value = ex.shuffle_slots[source];
  WarpSync(mask);  // nobody overwrites a slot before every lane has read
  return value;
}

}  // namespace lsemu

void __syncthreads() {
  lsemu::Execution& ex = lsemu::Current("__syncthreads");
  lsemu::YieldToScheduler(ex, lsemu::Waiting::kBlockBarrier);
}

void __syncwarp(unsigned int mask) { lsemu::WarpSync(mask); }

// ---- runtime calls ----

using lsemu::Fail;

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : Fail(cudaErrorInvalidDevice);
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return Fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "lsemu (CUDA emulator on the host)");
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->totalGlobalMem = size_t{80} << 30;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetPCIBusId(char* bus_id, int len, int device) {
  if (device != 0) return Fail(cudaErrorInvalidDevice);
  std::snprintf(bus_id, static_cast<size_t>(len), "emulated");
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t err = lsemu::last_error;
  lsemu::last_error = cudaSuccess;
  return err;
}
cudaError_t cudaPeekAtLastError() { return lsemu::last_error; }

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    default: return "error (emulated)";
  }
}

