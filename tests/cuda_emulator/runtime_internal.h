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

// Runs the stream's queued work up to and including `ticket` (from Enqueue), and
// whatever other streams' work it waits for.
void CompleteUpTo(cudaStream_t stream, uint64_t ticket);
// Runs every stream's queued work (cudaDeviceSynchronize, and the calls that imply it).
void CompleteAll();

}  // namespace lsemu
