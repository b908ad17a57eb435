// MaxPool2D NHWC: forward values, argmax and backward gradients must be bitwise the
// CPU's, for padded, overlapping, strided and degenerate windows, with many ties.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cpu/pool.h"
#include "kernels/cuda/pool.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::BitwiseEqual;
using testing::DeviceBuffer;

using CudaPoolTest = testing::CudaTest;

Pool2dShape Make(int64_t n, int64_t h, int64_t w, int64_t c, int64_t wh, int64_t ww, int64_t sh,
                 int64_t sw, int64_t ph, int64_t pw) {
  Pool2dShape s;
  s.batch = n;
  s.in_h = h;
  s.in_w = w;
  s.channels = c;
  s.window_h = wh;
  s.window_w = ww;
  s.stride_h = sh;
  s.stride_w = sw;
  s.pad_h = ph;
  s.pad_w = pw;
  return s;
}

std::vector<Pool2dShape> Shapes() {
  return {
      Make(1, 5, 5, 1, 2, 2, 2, 2, 0, 0),     // classic, odd input (last row/col unused)
      Make(2, 7, 9, 3, 3, 3, 2, 2, 1, 1),     // padded
      Make(3, 8, 8, 17, 3, 3, 1, 1, 0, 0),    // overlapping windows: shared winners
      Make(1, 1, 1, 5, 1, 1, 1, 1, 0, 0),     // 1x1
      Make(4, 13, 11, 64, 2, 3, 1, 2, 1, 1),  // anisotropic window/stride, padded
      Make(1, 28, 28, 32, 2, 2, 2, 2, 0, 0),  // Fashion-MNIST CNN
      Make(5, 6, 4, 3, 4, 4, 1, 3, 2, 3),     // pad close to the window, wide stride
  };
}

TEST_F(CudaPoolTest, ForwardAndBackwardAreBitwiseTheCpus) {
  TestRng rng(41);
  for (const Pool2dShape& s : Shapes()) {
    for (bool ties : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "N=" << s.batch << " H=" << s.in_h << " W=" << s.in_w << " C=" << s.channels
                   << " win=" << s.window_h << "x" << s.window_w << " stride=" << s.stride_h << ","
                   << s.stride_w << " pad=" << s.pad_h << "," << s.pad_w << " ties=" << ties);
      const int64_t in_n = s.batch * s.in_h * s.in_w * s.channels;
      const int64_t out_n = s.batch * s.out_h() * s.out_w() * s.channels;
      std::vector<float> x = rng.Vector(in_n);
      if (ties) {
        for (auto& v : x) v = static_cast<float>(rng.Next() % 3);  // many equal maxima
      }
      const std::vector<float> dy = rng.Vector(out_n);
      std::vector<float> y(out_n), dx(in_n);
      std::vector<int32_t> argmax(out_n);
      cpu::MaxPool2dForward(s, x.data(), y.data(), argmax.data());
      cpu::MaxPool2dBackward(s, dy.data(), argmax.data(), dx.data());

      DeviceBuffer<float> d_x(x), d_y(out_n), d_dy(dy), d_dx(in_n);
      DeviceBuffer<int32_t> d_argmax(out_n);
      MaxPool2dForward(s, d_x.get(), d_y.get(), d_argmax.get(), stream_);
      MaxPool2dBackward(s, d_dy.get(), d_argmax.get(), d_dx.get(), stream_);
      EXPECT_TRUE(BitwiseEqual(d_y.Download(), y)) << "y";
      EXPECT_EQ(d_argmax.Download(), argmax) << "argmax";
      EXPECT_TRUE(BitwiseEqual(d_dx.Download(), dx)) << "dx";
    }
  }
}

TEST_F(CudaPoolTest, BackwardOverwritesStaleGradient) {
  const Pool2dShape s = Make(1, 4, 4, 2, 2, 2, 2, 2, 0, 0);
  const int64_t in_n = 32, out_n = 8;
  TestRng rng(42);
  const std::vector<float> x = rng.Vector(in_n), dy = rng.Vector(out_n);
  std::vector<float> y(out_n), dx(in_n);
  std::vector<int32_t> argmax(out_n);
  cpu::MaxPool2dForward(s, x.data(), y.data(), argmax.data());
  cpu::MaxPool2dBackward(s, dy.data(), argmax.data(), dx.data());
  DeviceBuffer<float> d_dy(dy), d_dx(in_n);  // d_dx starts as NaN garbage
  DeviceBuffer<int32_t> d_argmax(argmax);
  MaxPool2dBackward(s, d_dy.get(), d_argmax.get(), d_dx.get(), stream_);
  EXPECT_TRUE(BitwiseEqual(d_dx.Download(), dx));
}

}  // namespace
}  // namespace lockstep::kernels::cuda
