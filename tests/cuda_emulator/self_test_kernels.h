// Small kernels that exercise one emulator rule each (self_test_kernels.cu), for
// emulator_self_test.cc. Pointers are "device" pointers from cudaMalloc.
#pragma once

#include <cuda_runtime.h>

namespace lsemu::self_test {

// out[t] = the value thread (t + 1) % threads wrote to shared memory, read WITHOUT a
// barrier in between (a race), or with one (synced = true). One block, <= 1024 threads.
void ShiftThroughShared(int* out, int threads, bool synced);
// Every block reads its shared int before writing it; out[block] gets what it read.
void ReadSharedBeforeWrite(int* out, int blocks);
// out[linear thread id of the whole grid] = 1 + that id, computed from threadIdx /
// blockIdx / blockDim / gridDim in 3-D.
void WriteLinearIds(int* out, dim3 grid, dim3 block);
// out[t] = in[source lane of t's segment] for __shfl_sync(full mask, in[t], src, width).
void Shuffle(const double* in, double* out, int threads, int src_lane, int width);
// Lane 0 waits at __syncthreads while lanes 1-31 wait at __shfl_sync for it.
void DivergentBarrier(int* out);
// Writes out[0..n]: one element past an n-element buffer.
void WriteOnePast(float* out, int n);
// A launch with `threads` threads per block and `shared_bytes` dynamic shared memory.
void LaunchEmpty(int threads, size_t shared_bytes);
// 64 threads exchange through shared memory across warps with only __syncwarp between
// write and read (a bug: that needs __syncthreads): out[t] = what t read of slot t ^ 32.
void CrossWarpExchangeWithSyncwarp(int* out);
// Lanes 16-31 return; lanes 0-15 then __syncwarp with the full mask (legal: exited
// lanes count as arrived) and write out[lane] = lane.
void SyncwarpAfterSomeLanesExit(int* out);
// A kernel declared __launch_bounds__(64), launched with `threads` threads.
void LaunchBounded(int threads);
// Sum of in[0..n) by one block of 256 threads: a shared-memory tree reduction.
void BlockTreeSum(const int* in, int n, int* out);
// out[i] = (in ? in[i] : 0) + value for i < n, queued on `stream`.
void AddOnStream(const int* in, int* out, int n, int value, cudaStream_t stream);

}  // namespace lsemu::self_test
