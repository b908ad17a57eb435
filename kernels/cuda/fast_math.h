// FastExp / FastTanh / FastSigmoid of kernels/cpu/fast_math.h as __host__ __device__
// functions: the same operations in the same order, so with --fmad=false and IEEE
// division (nvcc's default -prec-div=true) a GPU result is bitwise the CPU's when the
// CPU code is not FMA-contracted either (its baseline clone, or -ffp-contract=off;
// GCC 12 does contract the x86-64-v3 clone even in ISO C++ mode, a last-bit
// difference). The recurrent kernels use these rather than CUDA's expf / tanhf, which
// differ from the CPU's polynomials by an ulp or two. Header-only; compiles under g++
// (host) and nvcc. Pure functions: thread-safe.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

// std::min / std::max spelled out, so NaN propagates exactly as in the CPU code
// (std::max(a, b) is a < b ? b : a; std::min(a, b) is b < a ? b : a).
LS_HOST_DEVICE float StdMax(float a, float b) { return a < b ? b : a; }
LS_HOST_DEVICE float StdMin(float a, float b) { return b < a ? b : a; }

LS_HOST_DEVICE float FloatFromBits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// e^x, Cephes expf as in cpu::FastExp (see there for the method and accuracy).
LS_HOST_DEVICE float FastExp(float x) {
  x = StdMin(StdMax(x, -87.3f), 88.3f);
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
  return p * FloatFromBits(bits);
}

// tanh(x) as cpu::FastTanh: odd polynomial below |x| = 0.625, 1 - 2 / (e^{2|x|} + 1) above.
LS_HOST_DEVICE float FastTanh(float x) {
  const float a = StdMin(fabsf(x), 10.0f);
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

LS_HOST_DEVICE float FastSigmoid(float x) { return 1.0f / (1.0f + FastExp(-x)); }

}  // namespace lockstep::kernels::cuda
