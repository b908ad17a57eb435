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

// bf16 activation storage (training.precision: BF16), split over threads:
// bits[i] = Fp32ToBf16Bits(x[i]) and x[i] = RoundToBf16(x[i]) in one pass, so the fp32
// working copy the next layer reads holds exactly the stored values. bits may be null.
void RoundToBf16Stored(float* x, uint16_t* bits, int64_t n);
// y[i] = the fp32 value of bits[i] (exact).
void Bf16BitsToFp32(const uint16_t* bits, float* y, int64_t n);

}  // namespace lockstep::kernels::cpu
