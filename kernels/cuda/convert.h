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
// bf16 activation storage: y = bf16(x) and x = float(y) in place, in one pass (the CPU's
// kernels::cpu::RoundToBf16Stored). y may be null (round only).
void RoundToBf16Stored(float* x, uint16_t* y, int64_t n, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
