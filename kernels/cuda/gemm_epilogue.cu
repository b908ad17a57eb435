#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm_epilogue.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda::internal {
namespace {

__global__ void GemmEpilogueKernel(float* c, int64_t m, int64_t n, int64_t ldc, bool k_is_zero,
                                   float beta, const float* bias, bool relu) {
  const int64_t total = m * n;
  LS_GRID_STRIDE_LOOP(i, total) {
    const int64_t row = i / n, col = i % n;
    float* p = c + row * ldc + col;
    float v = *p;
    if (k_is_zero) v = beta == 0.0f ? 0.0f : beta * v;
    if (bias != nullptr) v += bias[col];
    if (relu) v = v > 0.0f ? v : 0.0f;
    *p = v;
  }
}

}  // namespace

void GemmEpilogueKernelLaunch(float* c, int64_t m, int64_t n, int64_t ldc, bool k_is_zero,
                              float beta, const float* bias, bool relu, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  GemmEpilogueKernel<<<GridFor(m * n), kThreads, 0, stream>>>(c, m, n, ldc, k_is_zero, beta, bias,
                                                              relu);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda::internal
