// Deterministic block reductions (CUDA only): every thread writes its partial to
// shared memory and the block adds them in a fixed binary tree, so the result
// depends only on the inputs and blockDim, never on timing. No atomics.
#pragma once

#include <cuda_runtime.h>

namespace lockstep::kernels::cuda {

// Sum of `value` over the block; blockDim.x must be a power of two <= 1024 and
// `scratch` hold blockDim.x elements. Every thread gets the total. Ends synchronised,
// so scratch may be reused right after.
template <typename T>
__device__ T BlockSum(T value, T* scratch) {
  const int t = threadIdx.x;
  scratch[t] = value;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (t < half) scratch[t] += scratch[t + half];
    __syncthreads();
  }
  const T total = scratch[0];
  __syncthreads();
  return total;
}

}  // namespace lockstep::kernels::cuda
