// Max pooling, NHWC. The channel loop is innermost and branch-free (selects), so
// it vectorises; padded positions are skipped by clipping the window.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <limits>

#include "common/check.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {

namespace {

// Samples [n0, n1) of the forward pass (argmax indices stay global).
LS_KERNEL_CLONES void MaxPool2dForwardSamples(const Pool2dShape& s, const float* x, float* y, int32_t* argmax,
                                              int64_t n0, int64_t n1) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), ch = s.channels;
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const int64_t ih0 = oh * s.stride_h - s.pad_h;
      const int64_t h_lo = std::max<int64_t>(0, ih0), h_hi = std::min(s.in_h, ih0 + s.window_h);
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        const int64_t iw0 = ow * s.stride_w - s.pad_w;
        const int64_t w_lo = std::max<int64_t>(0, iw0), w_hi = std::min(s.in_w, iw0 + s.window_w);
        const int64_t out = ((n * oh_n + oh) * ow_n + ow) * ch;
        float* __restrict yr = y + out;
        int32_t* __restrict ar = argmax + out;
        // Start from the first valid position; later ones win only if strictly larger.
        const int64_t first = ((n * s.in_h + h_lo) * s.in_w + w_lo) * ch;
        for (int64_t c = 0; c < ch; ++c) {
          yr[c] = x[first + c];
          ar[c] = static_cast<int32_t>(first + c);
        }
        for (int64_t ih = h_lo; ih < h_hi; ++ih) {
          for (int64_t iw = (ih == h_lo ? w_lo + 1 : w_lo); iw < w_hi; ++iw) {
            const int64_t base = ((n * s.in_h + ih) * s.in_w + iw) * ch;
            const float* __restrict xr = x + base;
            const int32_t base32 = static_cast<int32_t>(base);
            for (int64_t c = 0; c < ch; ++c) {
              // Mask arithmetic instead of selects so GCC vectorises the mixed float/int update.
              const float cur = yr[c], v = xr[c];
              const int32_t gt = -static_cast<int32_t>(v > cur);  // all ones when v wins
              yr[c] = std::max(cur, v);                           // cur < v ? v : cur
              ar[c] = (gt & (base32 + static_cast<int32_t>(c))) | (~gt & ar[c]);
            }
          }
        }
      }
    }
  }
}

}  // namespace

// Large batches are split over threads by sample when several BLAS threads are
// configured (parallel.h): a window never crosses samples, so the parts are disjoint.
void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) {
  LS_CHECK(s.window_h > 0 && s.window_w > 0 && s.stride_h > 0 && s.stride_w > 0 &&
           s.pad_h >= 0 && s.pad_w >= 0 && s.pad_h < s.window_h && s.pad_w < s.window_w)
      << "MaxPool2d: bad window/stride/pad (pad must be smaller than the window)";
  LS_CHECK(s.out_h() > 0 && s.out_w() > 0) << "MaxPool2d: window larger than padded input";
  LS_CHECK_LE(s.batch * s.in_h * s.in_w * s.channels, int64_t{std::numeric_limits<int32_t>::max()})
      << "MaxPool2d: input too large for int32 argmax";
  const int parts = std::min<int64_t>(ElementwiseParts(s.batch * s.in_h * s.in_w * s.channels),
                                      std::max<int64_t>(s.batch, 1));
  ParallelFor(parts, s.batch, [&](int, int64_t n0, int64_t n1) { MaxPool2dForwardSamples(s, x, y, argmax, n0, n1); });
}

void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx) {
  const int64_t in_per = s.in_h * s.in_w * s.channels;
  const int64_t out_per = s.out_h() * s.out_w() * s.channels;
  const int parts = std::min<int64_t>(ElementwiseParts(s.batch * in_per), std::max<int64_t>(s.batch, 1));
  ParallelFor(parts, s.batch, [&](int, int64_t n0, int64_t n1) {
    std::fill(dx + n0 * in_per, dx + n1 * in_per, 0.0f);
    // Overlapping windows may share a winner: accumulate in output order (deterministic).
    for (int64_t i = n0 * out_per; i < n1 * out_per; ++i) dx[argmax[i]] += dy[i];
  });
}

}  // namespace lockstep::kernels::cpu
