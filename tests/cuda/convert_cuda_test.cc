// fp32 <-> bf16 against the host rounding kernels::cpu::Fp32ToBf16Bits (round to
// nearest even; itself tested against an independent reference in
// tests/kernels/bf16_test.cc), with the halfway, overflow, subnormal and NaN cases.
// Any NaN pattern counts for a NaN input (the CPU's quieting rule is not required).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/bf16.h"
#include "kernels/cuda/convert.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::DeviceBuffer;

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
bool IsBf16NaN(uint16_t h) { return (h & 0x7F80u) == 0x7F80u && (h & 0x7Fu) != 0; }

using CudaConvertTest = testing::CudaTest;

TEST_F(CudaConvertTest, Fp32ToBf16RoundsToNearestEven) {
  std::vector<float> x = {0.0f,
                          -0.0f,
                          1.0f,
                          -2.5f,
                          FromBits(0x3F808000u),              // halfway, even below: 0x3F80
                          FromBits(0x3F818000u),              // halfway, odd below: 0x3F82
                          FromBits(0x3F808001u),              // just above halfway: 0x3F81
                          std::numeric_limits<float>::max(),  // rounds up to +inf
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::denorm_min(),
                          FromBits(0x00012345u),
                          std::numeric_limits<float>::quiet_NaN(),
                          FromBits(0x7F800001u)};
  TestRng rng(71);
  for (int i = 0; i < 100003; ++i) x.push_back(FromBits(rng.Next()));  // every exponent
  const int64_t n = static_cast<int64_t>(x.size());
  DeviceBuffer<float> d_x(x);
  DeviceBuffer<uint16_t> d_y(n);
  Fp32ToBf16(d_x.get(), d_y.get(), n, stream_);
  const std::vector<uint16_t> y = d_y.Download();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool ok = std::isnan(x[i]) ? IsBf16NaN(y[i]) : y[i] == cpu::Fp32ToBf16Bits(x[i]);
    if (!ok && bad++ < 5) {
      ADD_FAILURE() << "x[" << i << "] bits 0x" << std::hex << Bits(x[i]) << " -> 0x" << y[i]
                    << ", want 0x" << cpu::Fp32ToBf16Bits(x[i]);
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST_F(CudaConvertTest, Bf16ToFp32IsExactForEveryPattern) {
  std::vector<uint16_t> x(65536);
  for (uint32_t i = 0; i < 65536; ++i) x[i] = static_cast<uint16_t>(i);
  DeviceBuffer<uint16_t> d_x(x);
  DeviceBuffer<float> d_y(65536);
  Bf16ToFp32(d_x.get(), d_y.get(), 65536, stream_);
  const std::vector<float> y = d_y.Download();
  int64_t bad = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const bool ok = IsBf16NaN(x[i]) ? std::isnan(y[i]) : Bits(y[i]) == (i << 16);
    if (!ok) ++bad;
  }
  EXPECT_EQ(bad, 0);
}

TEST_F(CudaConvertTest, OddLengthsRoundTrip) {
  TestRng rng(72);
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{257}, int64_t{70001}}) {
    const std::vector<float> x = rng.Vector(n);
    DeviceBuffer<float> d_x(x), d_back(n);
    DeviceBuffer<uint16_t> d_h(n);
    Fp32ToBf16(d_x.get(), d_h.get(), n, stream_);
    Bf16ToFp32(d_h.get(), d_back.get(), n, stream_);
    const std::vector<float> back = d_back.Download();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(Bits(back[i]), static_cast<uint32_t>(cpu::Fp32ToBf16Bits(x[i])) << 16)
          << "n=" << n << " i=" << i;
    }
  }
}

// A column slice of a wider matrix, converted into a compact 16-byte-aligned copy: the
// matrix's bits are the CPU's, the destination's padding is untouched.
TEST_F(CudaConvertTest, Fp32ToBf16MatrixConvertsOnlyTheMatrix) {
  TestRng rng(74);
  struct Case {
    int64_t rows, cols, ldx;
  };
  for (const Case& c : {Case{1, 1, 1}, Case{5, 3, 17}, Case{64, 128, 2048}, Case{33, 65, 65}}) {
    const int64_t ldy = Bf16RowStride(c.cols);
    ASSERT_EQ(ldy % 8, 0);
    const std::vector<float> x = rng.Vector(c.rows * c.ldx);
    const std::vector<uint16_t> sentinel(static_cast<size_t>(c.rows * ldy), 0xABCDu);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<uint16_t> d_y(sentinel);
    Fp32ToBf16Matrix(d_x.get(), c.rows, c.cols, c.ldx, d_y.get(), ldy, stream_);
    const std::vector<uint16_t> y = d_y.Download();
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t j = 0; j < ldy; ++j) {
        const uint16_t want = j < c.cols ? cpu::Fp32ToBf16Bits(x[r * c.ldx + j]) : 0xABCDu;
        ASSERT_EQ(y[r * ldy + j], want) << "rows=" << c.rows << " cols=" << c.cols << " r=" << r << " j=" << j;
      }
    }
  }
}

// training.precision: BF16 stores activations this way: the bits and the rounded fp32
// copy must both be the CPU's (which the CPU backend writes for the same op).
TEST_F(CudaConvertTest, RoundToBf16StoredMatchesTheCpu) {
  TestRng rng(73);
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{4099}, int64_t{300007}}) {
    std::vector<float> x = rng.Vector(n);
    x[0] = FromBits(0x3F818000u);  // a tie, rounded to even (up)
    std::vector<float> want = x;
    std::vector<uint16_t> want_bits(static_cast<size_t>(n));
    cpu::RoundToBf16Stored(want.data(), want_bits.data(), n);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<uint16_t> d_bits(n);
    RoundToBf16Stored(d_x.get(), d_bits.get(), n, stream_);
    const std::vector<float> got = d_x.Download();
    const std::vector<uint16_t> got_bits = d_bits.Download();
    DeviceBuffer<float> d_only(x);  // no bits: round in place only
    RoundToBf16Stored(d_only.get(), nullptr, n, stream_);
    const std::vector<float> only = d_only.Download();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got_bits[i], want_bits[i]) << "n=" << n << " i=" << i;
      ASSERT_EQ(Bits(got[i]), Bits(want[i])) << "n=" << n << " i=" << i;
      ASSERT_EQ(Bits(only[i]), Bits(want[i])) << "n=" << n << " i=" << i;
    }
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
