// fp32 <-> bf16 conversion on the GPU. bf16 values are passed as their raw 16-bit
// patterns (uint16_t) so that this header needs no CUDA type. fp32 -> bf16 rounds to
// nearest even (NaN stays NaN); bf16 -> fp32 is exact. Pointers are device memory.
// Thread-safe; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lockstep::kernels::cuda {

void Fp32ToBf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
void Bf16ToFp32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream);
// y = x rounded to bf16, kept in fp32 (the CPU's kernels::cpu::RoundToBf16); y == x
// allowed. For operands of fp32 kernels that must compute on bf16 values.
void RoundToBf16(const float* x, float* y, int64_t n, cudaStream_t stream);
// bf16 activation storage: y = bf16(x) and x = float(y) in place, in one pass (the CPU's
// kernels::cpu::RoundToBf16Stored). y may be null (round only).
void RoundToBf16Stored(float* x, uint16_t* y, int64_t n, cudaStream_t stream);
// A row-major (rows x cols) matrix with row stride ldx to bf16 with row stride ldy
// (>= cols): only the matrix is read and written, not the padding between rows. For
// GEMM inputs that are column slices of wider matrices (an LSTM step's h_{t-1} inside
// the whole sequence), and to give their rows the 16-byte alignment tensor cores want.
void Fp32ToBf16Matrix(const float* x, int64_t rows, int64_t cols, int64_t ldx, uint16_t* y, int64_t ldy,
                      cudaStream_t stream);
// The row stride Fp32ToBf16Matrix copies use for `cols` columns: a multiple of 8
// elements (16 bytes).
inline int64_t Bf16RowStride(int64_t cols) { return (cols + 7) / 8 * 8; }

}  // namespace lockstep::kernels::cuda
