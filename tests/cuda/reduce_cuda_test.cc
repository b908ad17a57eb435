// Deterministic sum of squares against the CPU's double accumulation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/reduce.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::DeviceBuffer;

using CudaReduceTest = testing::CudaTest;

double RunSumOfSquares(const DeviceBuffer<float>& x, int64_t n, cudaStream_t stream) {
  DeviceBuffer<double> out(1), ws(SumOfSquaresWorkspaceElems(n));
  SumOfSquares(x.get(), n, out.get(), ws.get(), stream);
  return out.Download()[0];
}

TEST_F(CudaReduceTest, SumOfSquaresMatchesCpu) {
  TestRng rng(21);
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{255}, int64_t{2047}, int64_t{2048},
                    int64_t{2049}, int64_t{(1 << 20) + 3}, int64_t{5'000'011}}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const std::vector<float> x = rng.Vector(n, -3.0f, 3.0f);
    DeviceBuffer<float> d_x(x);
    const double got = RunSumOfSquares(d_x, n, stream_);
    const double want = cpu::SumOfSquares(x.data(), n);
    EXPECT_NEAR(got, want, 1e-12 * want);
  }
}

TEST_F(CudaReduceTest, SumOfSquaresOfNothingIsZero) {
  DeviceBuffer<float> empty(0);
  EXPECT_EQ(RunSumOfSquares(empty, 0, stream_), 0.0);
}

TEST_F(CudaReduceTest, SumOfSquaresIsBitwiseReproducible) {
  TestRng rng(22);
  const int64_t n = 3'000'017;
  DeviceBuffer<float> d_x(rng.Vector(n, -100.0f, 100.0f));
  const double first = RunSumOfSquares(d_x, n, stream_);
  for (int i = 0; i < 5; ++i) {
    const double again = RunSumOfSquares(d_x, n, stream_);
    EXPECT_EQ(std::memcmp(&first, &again, sizeof(double)), 0) << first << " vs " << again;
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
