// Internal to kernels/cuda/gemm.cc: the cases cuBLASLt does not cover (k == 0, and
// epilogues without a fused algorithm) as one small strided kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lockstep::kernels::cuda::internal {

// c (m, n; row stride ldc): c = (k_is_zero ? (beta == 0 ? 0 : beta * c) : c) + bias[col]
// (bias may be null), then ReLU when relu.
void GemmEpilogueKernelLaunch(float* c, int64_t m, int64_t n, int64_t ldc, bool k_is_zero,
                              float beta, const float* bias, bool relu, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda::internal
