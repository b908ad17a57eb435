// bfloat16 rounding on the CPU: the values a bf16 GEMM input holds, kept in fp32
// storage. Round to nearest, ties to even (what the GPU's __float2bfloat16_rn does);
// NaN stays NaN (quiet), infinities stay infinities. The CPU backend rounds GEMM
// inputs this way for training.precision: BF16_GEMM, which makes it the reference of
// the GPU's bf16 tensor-core GEMMs: bf16 x bf16 products are exact in fp32, so the two
// differ only in summation order.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// The bf16 bit pattern (the top 16 bits of the rounded fp32).
uint16_t Fp32ToBf16Bits(float x);
// x rounded to the nearest bf16 value, as an fp32.
float RoundToBf16(float x);
// y[i] = RoundToBf16(x[i]); y == x allowed.
void RoundToBf16(const float* x, float* y, int64_t n);

}  // namespace lockstep::kernels::cpu
