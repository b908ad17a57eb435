// HWIO <-> OHWI filter transposes: one thread per destination element gathering its
// source (filter_layout_index.h). Filters are small (a 3x3x64x64 filter is 147 KiB),
// so the strided reads cost nothing next to the convolution they feed.
#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/filter_layout.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {
namespace {

__global__ void HwioToOhwiKernel(FilterDims d, const float* hwio, float* ohwi) {
  const int64_t total = FilterCount(d);
  LS_GRID_STRIDE_LOOP(j, total) { HwioToOhwiElement(d, hwio, ohwi, j); }
}

__global__ void OhwiToHwioKernel(FilterDims d, const float* ohwi, float beta, float* hwio) {
  const int64_t total = FilterCount(d);
  LS_GRID_STRIDE_LOOP(i, total) { OhwiToHwioElement(d, ohwi, beta, hwio, i); }
}

void CheckDims(const FilterDims& d, const void* src, const void* dst) {
  LS_CHECK(d.kernel_h > 0 && d.kernel_w > 0 && d.in_c > 0 && d.out_c > 0)
      << "filter layout: bad filter " << d.kernel_h << "x" << d.kernel_w << "x" << d.in_c << "x"
      << d.out_c;
  LS_CHECK(src != dst) << "filter layout: source and destination must not overlap";
}

}  // namespace

void FilterHwioToOhwi(const FilterDims& d, const float* hwio, float* ohwi, cudaStream_t stream) {
  CheckDims(d, hwio, ohwi);
  const int64_t total = FilterCount(d);
  HwioToOhwiKernel<<<GridFor(total), kThreads, 0, stream>>>(d, hwio, ohwi);
  LS_CUDA_CHECK_LAUNCH();
}

void FilterOhwiToHwio(const FilterDims& d, const float* ohwi, float beta, float* hwio,
                      cudaStream_t stream) {
  CheckDims(d, ohwi, hwio);
  LS_CHECK(beta == 0.0f || beta == 1.0f) << "FilterOhwiToHwio: beta " << beta;
  const int64_t total = FilterCount(d);
  OhwiToHwioKernel<<<GridFor(total), kThreads, 0, stream>>>(d, ohwi, beta, hwio);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
