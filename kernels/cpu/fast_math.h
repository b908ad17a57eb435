// Branch-free float exp / tanh / sigmoid that GCC auto-vectorises (with
// -fno-trapping-math, set for the kernels target), and LS_KERNEL_CLONES, which
// builds a hot loop twice: AVX2 (x86-64-v3) and baseline SSE2, picked at load
// time. glibc's scalar tanhf/expf were a third of the language models' step time.
// Accuracy, checked against double-precision references in
// tests/kernels/fast_math_test.cc: FastExp within 2 ulp on [-87, 88]; FastTanh
// within 2.5e-7 relative, exactly +-1 for |x| >= 10; FastSigmoid within 3 ulp.
// The AVX2 clone may differ from the baseline one in the last bits: GCC contracts
// a * b + c into FMA there even in ISO C++ mode (C++ does not imply
// -ffp-contract=off), so results depend on the host CPU. The CUDA kernels' tests
// compare with tolerances, or with FMA-free host references, for that reason.
// Header-only, pure functions: thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LS_KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LS_KERNEL_CLONES
#endif
// For helpers called from LS_KERNEL_CLONES functions: inlined, they are compiled
// for each clone's instruction set (an out-of-line helper is baseline only).
#define LS_INLINE inline __attribute__((always_inline))

namespace lockstep::kernels::cpu {

// 8 floats, one AVX register in the AVX2 clone (GCC vector extension).
typedef float V8 __attribute__((vector_size(32)));
// V8 with float alignment, for loads and stores through float pointers: GCC emits
// unaligned moves. (Reducing the alignment must be a typedef of V8 itself; written
// on float next to vector_size it is silently 32.)
typedef V8 V8Unaligned __attribute__((aligned(4)));

// e^x for x in [-87.3, 88.3] (clamped beyond: ~1.3e-38 below, ~2.2e38 above). Cephes
// expf: x = k ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact r), a degree-6
// polynomial for e^r, and 2^k built in the exponent bits.
LS_INLINE float FastExp(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick (no cvt rounding mode).
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float k = t - 12582912.0f;
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// tanh(x): an odd minimax polynomial for |x| < 0.625 (Cephes tanhf), else
// sign(x) (1 - 2 / (e^{2|x|} + 1)). Both are computed and one selected, so the
// loop stays branch-free.
LS_INLINE float FastTanh(float x) {
  const float a = std::min(std::abs(x), 10.0f);  // tanh(10) rounds to 1
  const float s = x * x;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const float small = p * s * x + x;
  const float big = 1.0f - 2.0f / (FastExp(2.0f * a) + 1.0f);
  const float big_signed = x < 0.0f ? -big : big;
  return a < 0.625f ? small : big_signed;
}

// 1 / (1 + e^-x); e^-x is clamped, so the result is never NaN and tends to 0 / 1.
LS_INLINE float FastSigmoid(float x) { return 1.0f / (1.0f + FastExp(-x)); }

}  // namespace lockstep::kernels::cpu
