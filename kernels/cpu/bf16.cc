#include "kernels/cpu/bf16.h"

#include <cstring>

#include "common/check.h"
#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {

namespace {

// The fp32 bit pattern of u rounded to bf16 (its low 16 bits zero). Branch-free, so the
// bulk loops vectorise. Adding 0x7FFF plus the lowest kept bit rounds to nearest with
// ties to even; a carry out of the mantissa correctly bumps the exponent (up to
// infinity). NaN keeps its sign and top payload bits and is forced quiet.
inline uint32_t RoundedBits(uint32_t u) {
  const uint32_t lsb = (u >> 16) & 1u;
  const uint32_t rounded = (u + 0x7FFFu + lsb) & 0xFFFF0000u;
  const uint32_t quiet_nan = (u | 0x00400000u) & 0xFFFF0000u;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded;
}

inline uint32_t BitsOf(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

inline float FloatOf(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}

}  // namespace

uint16_t Fp32ToBf16Bits(float x) { return static_cast<uint16_t>(RoundedBits(BitsOf(x)) >> 16); }

float RoundToBf16(float x) { return FloatOf(RoundedBits(BitsOf(x))); }

void RoundToBf16(const float* x, float* y, int64_t n) {
  LS_CHECK_GE(n, 0) << "RoundToBf16";
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = FloatOf(RoundedBits(BitsOf(x[i])));
  });
}

void RoundToBf16Stored(float* x, uint16_t* bits, int64_t n) {
  if (bits == nullptr) return RoundToBf16(x, x, n);
  LS_CHECK_GE(n, 0) << "RoundToBf16Stored";
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t u = RoundedBits(BitsOf(x[i]));
      bits[i] = static_cast<uint16_t>(u >> 16);
      x[i] = FloatOf(u);
    }
  });
}

void Bf16BitsToFp32(const uint16_t* bits, float* y, int64_t n) {
  LS_CHECK_GE(n, 0) << "Bf16BitsToFp32";
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = FloatOf(static_cast<uint32_t>(bits[i]) << 16);
  });
}

}  // namespace lockstep::kernels::cpu
