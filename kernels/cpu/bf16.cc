#include "kernels/cpu/bf16.h"

#include <cstring>

#include "common/check.h"
#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {

uint16_t Fp32ToBf16Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN: keep the sign, force quiet
  }
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest with ties to even; a carry
  // out of the mantissa correctly bumps the exponent (up to infinity).
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7FFFu + lsb) >> 16);
}

float RoundToBf16(float x) {
  const uint32_t u = static_cast<uint32_t>(Fp32ToBf16Bits(x)) << 16;
  float y;
  std::memcpy(&y, &u, sizeof(y));
  return y;
}

void RoundToBf16(const float* x, float* y, int64_t n) {
  LS_CHECK_GE(n, 0) << "RoundToBf16";
  for (int64_t i = 0; i < n; ++i) y[i] = RoundToBf16(x[i]);
}

void RoundToBf16Stored(float* x, uint16_t* bits, int64_t n) {
  LS_CHECK_GE(n, 0) << "RoundToBf16Stored";
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint16_t b = Fp32ToBf16Bits(x[i]);
      const uint32_t u = static_cast<uint32_t>(b) << 16;
      if (bits != nullptr) bits[i] = b;
      std::memcpy(&x[i], &u, sizeof(u));
    }
  });
}

void Bf16BitsToFp32(const uint16_t* bits, float* y, int64_t n) {
  LS_CHECK_GE(n, 0) << "Bf16BitsToFp32";
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t u = static_cast<uint32_t>(bits[i]) << 16;
      std::memcpy(&y[i], &u, sizeof(u));
    }
  });
}

}  // namespace lockstep::kernels::cpu
