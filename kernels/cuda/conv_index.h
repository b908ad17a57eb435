// Index arithmetic of the CUDA im2col / col2im kernels (kernels/cuda/conv.cu) as
// __host__ __device__ functions, so host tests can run them over every index of a
// shape. Layouts as kernels/cpu/conv.h: x and dx NHWC, cols row-major with one row
// per output pixel (n, oh, ow) and columns ordered (kh, kw, c). Header-only, no CUDA
// includes; pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/conv.h"
#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

// Conv2dShape with out_h/out_w and the cols row length resolved on the host
// (Conv2dShape's methods are host-only). Plain data: passed to kernels by value.
struct ConvDims {
  int64_t batch, in_h, in_w, in_c;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t out_h, out_w;
  int64_t col_cols;  // kernel_h * kernel_w * in_c
};

inline ConvDims ResolveConvDims(const ::lockstep::kernels::cpu::Conv2dShape& s) {
  return {s.batch,    s.in_h,  s.in_w,  s.in_c,    s.kernel_h, s.kernel_w,  s.stride_h,
          s.stride_w, s.pad_h, s.pad_w, s.out_h(), s.out_w(),  s.col_cols()};
}

// cols[row * col_cols + col]: x at input pixel (oh * stride - pad + kh, ow * stride - pad
// + kw), channel c, of sample n; 0 where that pixel lies in the zero padding.
LS_HOST_DEVICE float Im2colValue(const ConvDims& d, const float* x, int64_t row, int64_t col) {
  const int64_t ow = row % d.out_w;
  const int64_t oh = (row / d.out_w) % d.out_h;
  const int64_t n = row / (d.out_w * d.out_h);
  const int64_t c = col % d.in_c;
  const int64_t kw = (col / d.in_c) % d.kernel_w;
  const int64_t kh = col / (d.in_c * d.kernel_w);
  const int64_t ih = oh * d.stride_h - d.pad_h + kh;
  const int64_t iw = ow * d.stride_w - d.pad_w + kw;
  if (ih < 0 || ih >= d.in_h || iw < 0 || iw >= d.in_w) return 0.0f;
  return x[((n * d.in_h + ih) * d.in_w + iw) * d.in_c + c];
}

// Outputs o along one axis whose window [o * stride - pad, o * stride - pad + kernel)
// covers input position `in`: [*lo, *hi] (empty when *lo > *hi).
LS_HOST_DEVICE void CoveringOutputs(int64_t in, int64_t pad, int64_t kernel, int64_t stride,
                                    int64_t out_n, int64_t* lo, int64_t* hi) {
  const int64_t first = in + pad - kernel + 1;  // smallest o * stride that still covers `in`
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = (in + pad) / stride;  // in + pad >= 0
  *hi = last < out_n - 1 ? last : out_n - 1;
}

// dx[i] (i = ((n * in_h + ih) * in_w + iw) * in_c + c) as col2im's sum: the cols
// entries of every (output pixel, tap) that read input element i, added from 0 in
// output-pixel order (oh, then ow). That is the order of the CPU's scatter
// (Col2imAccumulate walks the rows in order and each row has at most one tap on i),
// so the same cols give bitwise the CPU's dx.
LS_HOST_DEVICE float Col2imGatherValue(const ConvDims& d, const float* cols, int64_t i) {
  const int64_t c = i % d.in_c;
  const int64_t iw = (i / d.in_c) % d.in_w;
  const int64_t ih = (i / (d.in_c * d.in_w)) % d.in_h;
  const int64_t n = i / (d.in_c * d.in_w * d.in_h);
  int64_t oh_lo, oh_hi, ow_lo, ow_hi;
  CoveringOutputs(ih, d.pad_h, d.kernel_h, d.stride_h, d.out_h, &oh_lo, &oh_hi);
  CoveringOutputs(iw, d.pad_w, d.kernel_w, d.stride_w, d.out_w, &ow_lo, &ow_hi);
  float acc = 0.0f;
  for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
    const int64_t kh = ih + d.pad_h - oh * d.stride_h;
    for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
      const int64_t kw = iw + d.pad_w - ow * d.stride_w;
      const int64_t row = (n * d.out_h + oh) * d.out_w + ow;
      acc += cols[row * d.col_cols + (kh * d.kernel_w + kw) * d.in_c + c];
    }
  }
  return acc;
}

// Whole samples per im2col chunk so the chunk's cols take at most max_bytes (at least
// one sample, at most the batch; 1 when the batch is empty, as the CPU's ChunkSamples).
inline int64_t ConvChunkSamples(const ::lockstep::kernels::cpu::Conv2dShape& s, size_t max_bytes) {
  const int64_t per_sample = s.out_h() * s.out_w() * s.col_cols() * int64_t{sizeof(float)};
  const int64_t fit = static_cast<int64_t>(max_bytes) / (per_sample > 0 ? per_sample : 1);
  const int64_t chunk = fit < s.batch ? fit : s.batch;
  return chunk > 1 ? chunk : 1;
}

}  // namespace lockstep::kernels::cuda
