// HWIO <-> OHWI filter transposes on the device: bitwise the reference built from the
// host-tested offsets (filter_layout_test.cc), beta 0 overwriting stale NaNs, beta 1
// adding, and the round trip restoring the filter.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cuda/filter_layout.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::BitwiseEqual;
using testing::DeviceBuffer;

using CudaFilterLayoutTest = testing::CudaTest;

std::vector<FilterDims> Filters() {
  // The Fashion-MNIST CNN's filters, odd sizes, and one over a grid's worth of elements.
  return {{3, 3, 1, 32}, {3, 3, 32, 64}, {1, 1, 1, 1}, {2, 5, 3, 7}, {5, 5, 100, 140}};
}

// The fixture's stream is non-blocking: not ordered after DeviceBuffer's poisoning
// memset and upload, nor before its download (all on the legacy default stream).
void DeviceSync() { LS_CUDA_CHECK(cudaDeviceSynchronize()); }

std::vector<float> ToOhwi(const FilterDims& d, const std::vector<float>& hwio) {
  std::vector<float> ohwi(hwio.size());
  for (int64_t kh = 0; kh < d.kernel_h; ++kh)
    for (int64_t kw = 0; kw < d.kernel_w; ++kw)
      for (int64_t ic = 0; ic < d.in_c; ++ic)
        for (int64_t oc = 0; oc < d.out_c; ++oc)
          ohwi[OhwiOffset(d, kh, kw, ic, oc)] = hwio[HwioOffset(d, kh, kw, ic, oc)];
  return ohwi;
}

TEST_F(CudaFilterLayoutTest, TransposesAreBitwiseTheReference) {
  TestRng rng(7);
  for (const FilterDims& d : Filters()) {
    SCOPED_TRACE(::testing::Message()
                 << d.kernel_h << "x" << d.kernel_w << "x" << d.in_c << "x" << d.out_c);
    const int64_t n = FilterCount(d);
    const std::vector<float> hwio = rng.Vector(n), grad_hwio = rng.Vector(n);
    const std::vector<float> ohwi = ToOhwi(d, hwio), grad_ohwi = ToOhwi(d, grad_hwio);

    DeviceBuffer<float> d_hwio(hwio), d_ohwi(n), d_grad(grad_ohwi), d_back(n);
    DeviceSync();
    FilterHwioToOhwi(d, d_hwio.get(), d_ohwi.get(), stream_);
    FilterOhwiToHwio(d, d_ohwi.get(), 0.0f, d_back.get(), stream_);  // d_back starts NaN
    DeviceSync();
    EXPECT_TRUE(BitwiseEqual(d_ohwi.Download(), ohwi)) << "HWIO -> OHWI";
    EXPECT_TRUE(BitwiseEqual(d_back.Download(), hwio)) << "round trip";

    FilterOhwiToHwio(d, d_grad.get(), 1.0f, d_back.get(), stream_);
    DeviceSync();
    std::vector<float> sum(hwio.size());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = hwio[i] + grad_hwio[i];
    EXPECT_TRUE(BitwiseEqual(d_back.Download(), sum)) << "beta 1";
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
