// 2-D convolution on the CPU by im2col + GEMM. Layouts follow Keras
// channels_last: activations NHWC, filters HWIO (kernel_h, kernel_w, in_c,
// out_c). Raw pointers; callers pass a workspace of Conv2dWorkspaceFloats().
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cpu {

struct Conv2dShape {
  int64_t batch = 1;
  int64_t in_h = 1, in_w = 1, in_c = 1;
  int64_t out_c = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // zero padding added on each side

  int64_t out_h() const { return (in_h + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + 2 * pad_w - kernel_w) / stride_w + 1; }
  // Rows of the im2col matrix (one per output pixel) and its row length.
  int64_t col_rows() const { return batch * out_h() * out_w(); }
  int64_t col_cols() const { return kernel_h * kernel_w * in_c; }
};

// Floats of scratch the three conv functions need for this shape: 0 for the
// 1x1 / stride 1 / no-pad case (x is already the im2col matrix), otherwise the
// im2col matrix of a chunk of whole samples. The chunk is the whole batch unless
// that exceeds 16 Mi floats (64 MiB); then the functions loop over chunks (one
// GEMM each), so the workspace stays bounded for any batch size.
size_t Conv2dWorkspaceFloats(const Conv2dShape& s);

// cols (col_rows x col_cols): row = output pixel (n, oh, ow), columns ordered (kh, kw, c).
void Im2col(const Conv2dShape& s, const float* x, float* cols);
// dx (NHWC) += scatter of cols back to the input positions. Caller zeroes dx first
// if it wants overwrite semantics.
void Col2imAccumulate(const Conv2dShape& s, const float* cols, float* dx);

// y (N, out_h, out_w, out_c) = conv(x (N, in_h, in_w, in_c), w (kh, kw, in_c, out_c)). No bias.
void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, float* y,
                   float* workspace);
// dx (N, in_h, in_w, in_c) = gradient w.r.t. the input (overwritten).
void Conv2dBackwardData(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                        float* workspace);
// dw = beta * dw + gradient w.r.t. the filter. beta is 0 or 1.
void Conv2dBackwardFilter(const Conv2dShape& s, const float* x, const float* dy, float beta,
                          float* dw, float* workspace);

}  // namespace lockstep::kernels::cpu
