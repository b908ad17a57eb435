// Index maps between the two filter layouts of a 2-D convolution: lockstep's HWIO
// (kernel_h, kernel_w, in_c, out_c; Keras channels_last, kernels/cpu/conv.h) and
// cuDNN's NHWC filter format OHWI = KRSC (out_c, kernel_h, kernel_w, in_c). Both are
// dense, row-major, last index fastest. Header-only, no CUDA runtime dependency: the
// same functions run in the kernels of filter_layout.cu and in host tests. Pure.
#pragma once

#include <cstdint>

#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

struct FilterDims {
  int64_t kernel_h = 1, kernel_w = 1, in_c = 1, out_c = 1;
};

LS_HOST_DEVICE int64_t FilterCount(const FilterDims& d) {
  return d.kernel_h * d.kernel_w * d.in_c * d.out_c;
}

// Flat offsets of element (kh, kw, ic, oc) in each layout.
LS_HOST_DEVICE int64_t HwioOffset(const FilterDims& d, int64_t kh, int64_t kw, int64_t ic,
                                  int64_t oc) {
  return ((kh * d.kernel_w + kw) * d.in_c + ic) * d.out_c + oc;
}
LS_HOST_DEVICE int64_t OhwiOffset(const FilterDims& d, int64_t kh, int64_t kw, int64_t ic,
                                  int64_t oc) {
  return ((oc * d.kernel_h + kh) * d.kernel_w + kw) * d.in_c + ic;
}

// Where the element at HWIO offset i lives in OHWI, and the inverse map.
LS_HOST_DEVICE int64_t OhwiIndexOfHwio(const FilterDims& d, int64_t i) {
  const int64_t oc = i % d.out_c;
  int64_t rest = i / d.out_c;
  const int64_t ic = rest % d.in_c;
  rest /= d.in_c;
  const int64_t kw = rest % d.kernel_w;
  const int64_t kh = rest / d.kernel_w;
  return OhwiOffset(d, kh, kw, ic, oc);
}
LS_HOST_DEVICE int64_t HwioIndexOfOhwi(const FilterDims& d, int64_t j) {
  const int64_t ic = j % d.in_c;
  int64_t rest = j / d.in_c;
  const int64_t kw = rest % d.kernel_w;
  rest /= d.kernel_w;
  const int64_t kh = rest % d.kernel_h;
  const int64_t oc = rest / d.kernel_h;
  return HwioOffset(d, kh, kw, ic, oc);
}

// One element of each transpose, as a thread of the kernels computes it. Both gather,
// so each output element is written by exactly one thread (coalesced writes).
// ohwi[j] = hwio[the same filter element].
LS_HOST_DEVICE void HwioToOhwiElement(const FilterDims& d, const float* hwio, float* ohwi,
                                      int64_t j) {
  ohwi[j] = hwio[HwioIndexOfOhwi(d, j)];
}
// hwio[i] = beta * hwio[i] + ohwi[the same filter element], beta 0 or 1. beta 0 never
// reads hwio[i], so stale NaNs there do not survive (the CPU kernels' beta semantics).
LS_HOST_DEVICE void OhwiToHwioElement(const FilterDims& d, const float* ohwi, float beta,
                                      float* hwio, int64_t i) {
  const float g = ohwi[OhwiIndexOfHwio(d, i)];
  hwio[i] = beta == 0.0f ? g : hwio[i] + g;
}

}  // namespace lockstep::kernels::cuda
