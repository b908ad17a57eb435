// 2-D max pooling on the CPU, NHWC. Raw pointers; no allocation.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

struct Pool2dShape {
  int64_t batch = 1;
  int64_t in_h = 1, in_w = 1, channels = 1;
  int64_t window_h = 2, window_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t pad_h = 0, pad_w = 0;  // padded positions never win the max

  int64_t out_h() const { return (in_h + 2 * pad_h - window_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + 2 * pad_w - window_w) / stride_w + 1; }
};

// y (N, out_h, out_w, C); argmax (same size) receives the flat NHWC index into x of
// each maximum (first one in window scan order on ties).
void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax);
// dx (N, in_h, in_w, C) is overwritten: zero, then dy scattered to argmax positions.
void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx);

}  // namespace lockstep::kernels::cpu
