// Dropout masks must be bitwise the CPU's (same Philox counter scheme). The host
// path of the shared __host__ __device__ Philox is checked here without a device.
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "kernels/cpu/dropout.h"
#include "kernels/cuda/dropout.h"
#include "kernels/cuda/philox.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::BitwiseEqual;
using testing::DeviceBuffer;

// No device needed: the header's host path against the CPU generator.
TEST(CudaPhiloxHostTest, HostPathMatchesCpuGenerator) {
  TestRng rng(51);
  for (int i = 0; i < 10000; ++i) {
    const std::array<uint32_t, 4> c = {rng.Next(), rng.Next(), rng.Next(), rng.Next()};
    const std::array<uint32_t, 2> k = {rng.Next(), rng.Next()};
    const std::array<uint32_t, 4> want = cpu::Philox4x32(c, k);
    const PhiloxWords got = Philox4x32(PhiloxWords{{c[0], c[1], c[2], c[3]}}, k[0], k[1]);
    ASSERT_EQ((std::array<uint32_t, 4>{got.w[0], got.w[1], got.w[2], got.w[3]}), want) << "i=" << i;
    ASSERT_EQ(PhiloxUniform(got.w[0]), cpu::UniformFromBits(want[0]));
  }
}

TEST(CudaPhiloxHostTest, KnownAnswer) {  // Random123 kat_vectors, as the CPU test
  const PhiloxWords w = Philox4x32(
      PhiloxWords{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(w.w[0], 0xd16cfe09u);
  EXPECT_EQ(w.w[1], 0x94fdccebu);
  EXPECT_EQ(w.w[2], 0x5001e420u);
  EXPECT_EQ(w.w[3], 0x24126ea1u);
}

using CudaDropoutTest = testing::CudaTest;

struct Shape {
  int64_t rows, row_len;
};

TEST_F(CudaDropoutTest, MaskAndOutputAreBitwiseTheCpus) {
  TestRng rng(52);
  DropoutKey key;
  key.seed = 0x0123456789abcdefull;
  key.layer = 3;
  key.step = (uint64_t{1} << 33) + 5;  // exercises the high step word
  const Shape shapes[] = {{1, 1}, {1, 3}, {3, 5}, {64, 784}, {7, 4099}, {1000, 6}};
  for (const Shape& s : shapes) {
    for (int64_t first_row : {int64_t{0}, int64_t{12345}}) {
      for (float rate : {0.0f, 0.1f, 0.5f, 0.9f}) {
        SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " row_len=" << s.row_len
                                          << " first_row=" << first_row << " rate=" << rate);
        const int64_t n = s.rows * s.row_len;
        const std::vector<float> x = rng.Vector(n);
        std::vector<float> y(n);
        std::vector<uint8_t> mask(n);
        cpu::DropoutForward(key, x.data(), y.data(), mask.data(), s.rows, s.row_len, first_row,
                            rate);
        DeviceBuffer<float> d_x(x), d_y(n);
        DeviceBuffer<uint8_t> d_mask(n);
        DropoutForward(key, d_x.get(), d_y.get(), d_mask.get(), s.rows, s.row_len, first_row, rate,
                       stream_);
        EXPECT_EQ(d_mask.Download(), mask);
        EXPECT_TRUE(BitwiseEqual(d_y.Download(), y));

        const std::vector<float> dy = rng.Vector(n);
        std::vector<float> dx(n);
        cpu::DropoutBackward(dy.data(), mask.data(), dx.data(), n, rate);
        DeviceBuffer<float> d_dy(dy), d_dx(n);
        DropoutBackward(d_dy.get(), d_mask.get(), d_dx.get(), n, rate, stream_);
        EXPECT_TRUE(BitwiseEqual(d_dx.Download(), dx));
      }
    }
  }
}

TEST_F(CudaDropoutTest, InPlaceAndRowSplitsAgree) {
  // Rows [0, 10) in one call equal rows [0, 4) + [4, 10) in two (ranks' slices).
  TestRng rng(53);
  DropoutKey key;
  key.seed = 99;
  key.layer = 1;
  key.step = 7;
  const int64_t rows = 10, row_len = 37, n = rows * row_len;
  const std::vector<float> x = rng.Vector(n);
  std::vector<float> y(n);
  std::vector<uint8_t> mask(n);
  cpu::DropoutForward(key, x.data(), y.data(), mask.data(), rows, row_len, 100, 0.3f);
  DeviceBuffer<float> d(x);
  DeviceBuffer<uint8_t> d_mask(n);
  DropoutForward(key, d.get(), d.get(), d_mask.get(), 4, row_len, 100, 0.3f, stream_);
  DropoutForward(key, d.get() + 4 * row_len, d.get() + 4 * row_len, d_mask.get() + 4 * row_len, 6,
                 row_len, 104, 0.3f, stream_);
  EXPECT_EQ(d_mask.Download(), mask);
  EXPECT_TRUE(BitwiseEqual(d.Download(), y));
}

}  // namespace
}  // namespace lockstep::kernels::cuda
