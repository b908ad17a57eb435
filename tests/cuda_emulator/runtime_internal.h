// What the emulator's runtime files share (emulator.cc: kernels and device queries;
// memory.cc: allocations and copies; streams.cc: streams, events, synchronisation).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>

namespace lsemu {

[[noreturn]] void Die(const std::string& message);

// A failing runtime call: its error is also what cudaGetLastError reports next.
cudaError_t Fail(cudaError_t err);

// LOCKSTEP_EMU_ORDER=reverse: blocks, warps, lanes and streams in reverse order.
bool ReverseOrder();

// Exactly `bytes` (not rounded up, so AddressSanitizer flags the first byte past them),
// filled with 0xFF: uninitialised memory holds garbage, here NaN. nullptr if out of memory.
void* PoisonedBlock(size_t bytes, size_t alignment);

enum class Where { kHost, kDevice, kPinned };
// Where p points: into a live cudaMalloc / cudaMallocHost block, or anywhere else (host).
Where Locate(const void* p);
const char* Name(Where w);
// Whether [p, p + bytes) lies inside one live cudaMalloc / cudaMallocHost block (for
// libraries that take a pointer and a size: the emulated cuDNN).
bool InOneAllocation(const void* p, size_t bytes);

// The handles and descriptors an emulated library hands out (cuDNN's, NCCL's): using
// one that was never created or is already destroyed is the caller's bug, and fatal.
void RegisterHandle(const void* handle);
void ForgetHandle(const void* handle);
// Dies naming `call` and `what` unless handle is registered.
void RequireHandle(const void* handle, const char* call, const char* what);

// x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero), as tensor cores
// take fp32 inputs; infinities and NaN pass unchanged.
inline float RoundToTf32(float x) {
  if (!(x - x == 0.0f)) return x;  // inf or NaN
  return BitCast<float>((BitCast<uint32_t>(x) + 0x1000u) & ~0x1fffu);
}

// Runs the stream's queued work up to and including `ticket` (from Enqueue), and
// whatever other streams' work it waits for.
void CompleteUpTo(cudaStream_t stream, uint64_t ticket);
// Runs every stream's queued work (cudaDeviceSynchronize, and the calls that imply it).
void CompleteAll();

}  // namespace lsemu
