// Conversions through the hardware's round-to-nearest-even instructions
// (__float2bfloat16_rn); the bit patterns cross the API as uint16_t.
#include <cuda_bf16.h>

#include "common/check.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {
namespace {

__global__ void Fp32ToBf16Kernel(const float* x, uint16_t* y, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) { y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i])); }
}

__global__ void Bf16ToFp32Kernel(const uint16_t* x, float* y, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) { y[i] = __bfloat162float(__ushort_as_bfloat16(x[i])); }
}

__global__ void RoundToBf16StoredKernel(float* x, uint16_t* y, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) {
    const __nv_bfloat16 b = __float2bfloat16_rn(x[i]);
    if (y != nullptr) y[i] = __bfloat16_as_ushort(b);
    x[i] = __bfloat162float(b);
  }
}

__global__ void RoundToBf16Kernel(const float* x, float* y, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) { y[i] = __bfloat162float(__float2bfloat16_rn(x[i])); }
}

__global__ void Fp32ToBf16MatrixKernel(const float* x, int64_t rows, int64_t cols, int64_t ldx, uint16_t* y,
                                       int64_t ldy) {
  const int64_t n = rows * cols;
  LS_GRID_STRIDE_LOOP(i, n) {
    const int64_t r = i / cols, c = i - r * cols;
    y[r * ldy + c] = __bfloat16_as_ushort(__float2bfloat16_rn(x[r * ldx + c]));
  }
}

}  // namespace

void Fp32ToBf16Matrix(const float* x, int64_t rows, int64_t cols, int64_t ldx, uint16_t* y, int64_t ldy,
                      cudaStream_t stream) {
  LS_CHECK(rows >= 0 && cols >= 0 && ldx >= cols && ldy >= cols)
      << "Fp32ToBf16Matrix: rows=" << rows << " cols=" << cols << " ldx=" << ldx << " ldy=" << ldy;
  if (rows == 0 || cols == 0) return;
  Fp32ToBf16MatrixKernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(x, rows, cols, ldx, y, ldy);
  LS_CUDA_CHECK_LAUNCH();
}

void Fp32ToBf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "Fp32ToBf16";
  if (n == 0) return;
  Fp32ToBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
  LS_CUDA_CHECK_LAUNCH();
}

void Bf16ToFp32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "Bf16ToFp32";
  if (n == 0) return;
  Bf16ToFp32Kernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
  LS_CUDA_CHECK_LAUNCH();
}

void RoundToBf16(const float* x, float* y, int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "RoundToBf16";
  if (n == 0) return;
  RoundToBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
  LS_CUDA_CHECK_LAUNCH();
}

void RoundToBf16Stored(float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "RoundToBf16Stored";
  if (n == 0) return;
  RoundToBf16StoredKernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
