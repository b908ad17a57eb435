// Deterministic reductions on the GPU (two passes, no atomics): the grouping of the
// additions depends only on n, so the same input gives the same bits on every run and
// every device. Pointers are device memory. Thread-safe; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lockstep::kernels::cuda {

// Doubles of device workspace that SumOfSquares needs for n elements (>= 1).
int64_t SumOfSquaresWorkspaceElems(int64_t n);
// *out (one device double) = sum of x[i]^2 over n, accumulated in double: pass 1 writes
// one partial per block into workspace, pass 2 adds the partials in a fixed tree.
void SumOfSquares(const float* x, int64_t n, double* out, double* workspace, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
