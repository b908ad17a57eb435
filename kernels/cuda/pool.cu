// Max pooling: forward is one thread per output element scanning its clipped
// window exactly as the CPU loop does. Backward gathers instead of scattering: one
// thread per input element visits, in output order, the outputs whose window
// covers it and adds dy where the argmax points back — the CPU's order, so the
// same bits, and no atomics.
#include <limits>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/pool.h"

namespace lockstep::kernels::cuda {
namespace {

// The shape with out_h/out_w resolved on the host (Pool2dShape's methods are host-only).
struct PoolDims {
  int64_t batch, in_h, in_w, ch, win_h, win_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w;
};

PoolDims Resolve(const Pool2dShape& s) {
  return {s.batch,    s.in_h,     s.in_w,  s.channels, s.window_h, s.window_w,
          s.stride_h, s.stride_w, s.pad_h, s.pad_w,    s.out_h(),  s.out_w()};
}

__global__ void MaxPoolForwardKernel(PoolDims d, const float* x, float* y, int32_t* argmax) {
  const int64_t total = d.batch * d.out_h * d.out_w * d.ch;
  LS_GRID_STRIDE_LOOP(i, total) {  // i = ((n * out_h + oh) * out_w + ow) * ch + c
    const int64_t c = i % d.ch;
    int64_t rest = i / d.ch;
    const int64_t ow = rest % d.out_w;
    rest /= d.out_w;
    const int64_t oh = rest % d.out_h;
    const int64_t n = rest / d.out_h;
    const int64_t ih0 = oh * d.stride_h - d.pad_h, iw0 = ow * d.stride_w - d.pad_w;
    const int64_t h_lo = ih0 > 0 ? ih0 : 0, h_hi = ih0 + d.win_h < d.in_h ? ih0 + d.win_h : d.in_h;
    const int64_t w_lo = iw0 > 0 ? iw0 : 0, w_hi = iw0 + d.win_w < d.in_w ? iw0 + d.win_w : d.in_w;
    int64_t best_i = ((n * d.in_h + h_lo) * d.in_w + w_lo) * d.ch + c;
    float best = x[best_i];
    for (int64_t ih = h_lo; ih < h_hi; ++ih) {
      for (int64_t iw = (ih == h_lo ? w_lo + 1 : w_lo); iw < w_hi; ++iw) {
        const int64_t j = ((n * d.in_h + ih) * d.in_w + iw) * d.ch + c;
        if (x[j] > best) {
          best = x[j];
          best_i = j;
        }
      }
    }
    y[i] = best;
    argmax[i] = static_cast<int32_t>(best_i);
  }
}

// Outputs along one axis whose window covers input position `in`: [*lo, *hi].
__device__ __forceinline__ void CoveringOutputs(int64_t in, int64_t pad, int64_t win,
                                                int64_t stride, int64_t out_n, int64_t* lo,
                                                int64_t* hi) {
  const int64_t first = in + pad - win + 1;  // smallest o*stride that still covers `in`
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = (in + pad) / stride;
  *hi = last < out_n - 1 ? last : out_n - 1;
}

__global__ void MaxPoolBackwardKernel(PoolDims d, const float* dy, const int32_t* argmax,
                                      float* dx) {
  const int64_t total = d.batch * d.in_h * d.in_w * d.ch;
  LS_GRID_STRIDE_LOOP(i, total) {  // i = ((n * in_h + ih) * in_w + iw) * ch + c
    const int64_t c = i % d.ch;
    int64_t rest = i / d.ch;
    const int64_t iw = rest % d.in_w;
    rest /= d.in_w;
    const int64_t ih = rest % d.in_h;
    const int64_t n = rest / d.in_h;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    CoveringOutputs(ih, d.pad_h, d.win_h, d.stride_h, d.out_h, &oh_lo, &oh_hi);
    CoveringOutputs(iw, d.pad_w, d.win_w, d.stride_w, d.out_w, &ow_lo, &ow_hi);
    float acc = 0.0f;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t o = ((n * d.out_h + oh) * d.out_w + ow) * d.ch + c;
        if (argmax[o] == i) acc += dy[o];
      }
    }
    dx[i] = acc;
  }
}

void CheckShape(const Pool2dShape& s) {
  LS_CHECK(s.window_h > 0 && s.window_w > 0 && s.stride_h > 0 && s.stride_w > 0 && s.pad_h >= 0 &&
           s.pad_w >= 0 && s.pad_h < s.window_h && s.pad_w < s.window_w)
      << "MaxPool2d: bad window/stride/pad (pad must be smaller than the window)";
  LS_CHECK(s.batch >= 0 && s.channels > 0 && s.in_h > 0 && s.in_w > 0)
      << "MaxPool2d: bad input shape";
  LS_CHECK(s.out_h() > 0 && s.out_w() > 0) << "MaxPool2d: window larger than padded input";
  LS_CHECK_LE(s.batch * s.in_h * s.in_w * s.channels, int64_t{std::numeric_limits<int32_t>::max()})
      << "MaxPool2d: input too large for int32 argmax";
}

}  // namespace

void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax,
                      cudaStream_t stream) {
  CheckShape(s);
  const PoolDims d = Resolve(s);
  const int64_t total = d.batch * d.out_h * d.out_w * d.ch;
  if (total == 0) return;
  MaxPoolForwardKernel<<<GridFor(total), kThreads, 0, stream>>>(d, x, y, argmax);
  LS_CUDA_CHECK_LAUNCH();
}

void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx,
                       cudaStream_t stream) {
  CheckShape(s);
  const PoolDims d = Resolve(s);
  const int64_t total = d.batch * d.in_h * d.in_w * d.ch;
  if (total == 0) return;
  MaxPoolBackwardKernel<<<GridFor(total), kThreads, 0, stream>>>(d, dy, argmax, dx);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
