// Launch-shape helpers shared by the .cu files of kernels/cuda (CUDA only).
// Elementwise kernels use 64-bit grid-stride loops, so any n works with a capped grid.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lockstep::kernels::cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// Blocks for a grid-stride loop over n items with `threads` per block (at least 1).
inline unsigned int GridFor(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned int>(blocks);
}

// for (int64_t i : GridStride(n)) is spelled out as a macro to keep kernels plain.
#define LS_GRID_STRIDE_LOOP(i, n)                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace lockstep::kernels::cuda
