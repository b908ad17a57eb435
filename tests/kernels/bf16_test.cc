// bf16 rounding on the CPU against an independent reference (the nearer of the two
// neighbouring bf16 values, distances computed exactly in double, ties to the even
// one), over a stride through all 2^32 bit patterns and the edge cases.
#include "kernels/cpu/bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace lockstep::kernels::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The bf16 value nearest to finite x: candidates are x truncated to bf16 and the next
// bf16 away from zero (2^128 standing in for "past the largest finite", i.e. infinity).
uint16_t ReferenceBits(float x) {
  const uint32_t u = Bits(x);
  const uint32_t lo = u & 0xFFFF0000u, hi = lo + 0x10000u;
  const double lo_v = std::fabs(static_cast<double>(FromBits(lo)));
  const double hi_v = (hi & 0x7FFFFFFFu) == 0x7F800000u ? std::ldexp(1.0, 128)
                                                       : std::fabs(static_cast<double>(FromBits(hi)));
  const double ax = std::fabs(static_cast<double>(x));
  const double d_lo = ax - lo_v, d_hi = hi_v - ax;
  if (d_lo < d_hi) return static_cast<uint16_t>(lo >> 16);
  if (d_hi < d_lo) return static_cast<uint16_t>(hi >> 16);
  return ((lo >> 16) & 1u) == 0 ? static_cast<uint16_t>(lo >> 16) : static_cast<uint16_t>(hi >> 16);
}

TEST(Bf16Test, RoundsToNearestWithTiesToEven) {
  EXPECT_EQ(RoundToBf16(1.0f), 1.0f);
  EXPECT_EQ(RoundToBf16(1.0f + std::ldexp(1.0f, -8)), 1.0f) << "a tie goes to the even neighbour (down)";
  EXPECT_EQ(RoundToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6))
      << "a tie goes to the even neighbour (up)";
  EXPECT_EQ(RoundToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(RoundToBf16(-3.14159265f), -3.140625f);
  EXPECT_EQ(Bits(RoundToBf16(-0.0f)), Bits(-0.0f));
  EXPECT_EQ(RoundToBf16(std::numeric_limits<float>::max()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(RoundToBf16(-std::numeric_limits<float>::infinity()), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(RoundToBf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(RoundToBf16(FromBits(0x7F800001u)))) << "a NaN whose payload rounds away stays NaN";
  EXPECT_TRUE(std::isnan(RoundToBf16(FromBits(0xFFFFFFFFu))));
}

TEST(Bf16Test, MatchesTheReferenceAcrossBitPatterns) {
  int64_t checked = 0, wrong = 0;
  for (uint64_t v = 0; v <= 0xFFFFFFFFull; v += 65521) {  // a prime stride hits every low-bit pattern
    for (uint32_t low : {0u, 0x7FFFu, 0x8000u, 0x8001u}) {  // and the rounding edges exactly
      const uint32_t u = (static_cast<uint32_t>(v) & 0xFFFF0000u) | low;
      const float x = FromBits(u);
      if (std::isnan(x)) continue;
      ++checked;
      if (Fp32ToBf16Bits(x) != ReferenceBits(x) && ++wrong <= 5) {
        ADD_FAILURE() << std::hex << "x bits 0x" << u << ": got 0x" << Fp32ToBf16Bits(x) << " want 0x"
                      << ReferenceBits(x);
      }
    }
    const float x = FromBits(static_cast<uint32_t>(v));
    if (!std::isnan(x)) {
      ++checked;
      if (Fp32ToBf16Bits(x) != ReferenceBits(x)) ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << checked;
  EXPECT_GT(checked, 300000);
}

TEST(Bf16Test, BulkRoundingInPlace) {
  float v[5] = {1.00390625f, -2.0f, 1e-40f, 65504.0f, 0.1f};
  float want[5];
  for (int i = 0; i < 5; ++i) want[i] = RoundToBf16(v[i]);
  RoundToBf16(v, v, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Bits(v[i]), Bits(want[i])) << i;
}

// Storage for training.precision: BF16, split over threads: the stored bits are the
// reference's, the fp32 copy is their exact value, and Bf16BitsToFp32 gives it back.
TEST(Bf16Test, StoredRoundingAndExpansionMatchTheReference) {
  const int before = BlasThreads();
  for (int threads : {1, 3}) {
    SetBlasThreads(threads);
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{100003}}) {
      std::vector<float> x(static_cast<size_t>(n));
      uint32_t state = 12345u + static_cast<uint32_t>(n);
      for (float& f : x) {
        do {
          state = state * 1664525u + 1013904223u;
          f = FromBits(state);
        } while (std::isnan(f));
      }
      std::vector<float> rounded = x, expanded(x.size(), 0.0f);
      std::vector<uint16_t> bits(x.size(), 0);
      RoundToBf16Stored(rounded.data(), bits.data(), n);
      Bf16BitsToFp32(bits.data(), expanded.data(), n);
      int64_t wrong = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const uint16_t want = ReferenceBits(x[i]);
        const bool ok = bits[i] == want && Bits(rounded[i]) == static_cast<uint32_t>(want) << 16 &&
                        Bits(expanded[i]) == Bits(rounded[i]);
        if (!ok && ++wrong <= 3) {
          ADD_FAILURE() << std::hex << "x bits 0x" << Bits(x[i]) << ": stored 0x" << bits[i] << " want 0x" << want
                        << ", rounded 0x" << Bits(rounded[i]) << ", expanded 0x" << Bits(expanded[i]);
        }
      }
      EXPECT_EQ(wrong, 0) << "n=" << n << " threads=" << threads;
      std::vector<float> rounded_only = x;  // no bits: round in place only
      RoundToBf16Stored(rounded_only.data(), nullptr, n);
      EXPECT_TRUE(rounded_only == rounded) << "n=" << n;
    }
  }
  SetBlasThreads(before);
}

}  // namespace
}  // namespace lockstep::kernels::cpu
