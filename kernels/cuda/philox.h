// Philox4x32-10 as a __host__ __device__ function: the same generator and constants as
// kernels/cpu/dropout.cc, so a dropout mask drawn on the GPU is bitwise the mask drawn
// on the CPU. Header-only; compiles under g++ (host only) and nvcc. Pure; thread-safe.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LS_HOST_DEVICE inline
#endif

namespace lockstep::kernels::cuda {

struct PhiloxWords {
  uint32_t w[4];
};

LS_HOST_DEVICE void PhiloxMulHiLo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  *lo = a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
#endif
}

// 10 rounds of Philox4x32 (Salmon et al., SC'11; Random123's constants).
LS_HOST_DEVICE PhiloxWords Philox4x32(PhiloxWords ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kW0;
      key1 += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    PhiloxMulHiLo(kM0, ctr.w[0], &hi0, &lo0);
    PhiloxMulHiLo(kM1, ctr.w[2], &hi1, &lo1);
    ctr = PhiloxWords{{hi1 ^ ctr.w[1] ^ key0, lo1, hi0 ^ ctr.w[3] ^ key1, lo0}};
  }
  return ctr;
}

// Uniform float in [0, 1) from the top 24 bits: exact, identical on host and device.
LS_HOST_DEVICE float PhiloxUniform(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

}  // namespace lockstep::kernels::cuda
