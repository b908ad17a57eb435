// Conv2d by im2col + one GEMM per batch chunk. In NHWC the kernel_w taps of one
// kernel row that fall inside the input are one contiguous run of floats, so
// im2col/col2im move one span per (output pixel, kh) and zero-fill the padded
// ends: branches are per span, never per element. With several BLAS threads the
// samples of a chunk are split over threads (ParallelRanges), each running its own
// im2col + single-threaded GEMM: OpenBLAS does not split these tall, narrow
// (N = out_c) GEMMs well. Thread-compatible (pure).
#include "kernels/cpu/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {
namespace {

// Upper bound on the im2col workspace (floats, 64 MiB). Larger batches are
// processed in chunks of whole samples so memory stays bounded.
constexpr int64_t kMaxWorkspaceFloats = int64_t{1} << 24;

bool IsPointwise(const Conv2dShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 &&
         s.pad_h == 0 && s.pad_w == 0;
}

int64_t ColsPerSample(const Conv2dShape& s) { return s.out_h() * s.out_w() * s.col_cols(); }

// im2col rows built and consumed at once (floats, 256 KiB): still in the core's L2
// when the GEMM reads them, or when col2im reads the GEMM's output. Building all of
// a batch first streamed it through memory twice more (OpenBLAS packs it again):
// the CNN's 32->64 conv at batch 64 went from 0.51-0.72 to 0.75-0.97 of the sgemm
// peak (bench_kernels_cpu, 1 thread) with these pieces.
constexpr int64_t kCacheFloats = int64_t{1} << 16;

// Samples per cache-sized piece (at least one).
int64_t CacheSamples(const Conv2dShape& s) {
  return std::max<int64_t>(1, kCacheFloats / std::max<int64_t>(1, ColsPerSample(s)));
}

// fn(first, piece) for the cache-sized pieces of samples [b0, b1), in order; `piece`
// is `s` with the piece's batch.
template <typename Fn>
void ForEachCachePiece(const Conv2dShape& s, int64_t b0, int64_t b1, Fn&& fn) {
  const int64_t step = CacheSamples(s);
  for (int64_t first = b0; first < b1; first += step) {
    Conv2dShape piece = s;
    piece.batch = std::min(b1, first + step) - first;
    fn(first, piece);
  }
}

// dw += the dw_n-float partial results of parts 1.. (partial holds parts - 1 of
// them), in part order: the filter gradient is fixed for a given thread count.
void AddPartials(const std::vector<float>& partial, int parts, int64_t dw_n, float* dw) {
  for (int p = 1; p < parts; ++p) {
    const float* src = partial.data() + (p - 1) * dw_n;
    for (int64_t i = 0; i < dw_n; ++i) dw[i] += src[i];
  }
}

// Samples per GEMM chunk.
int64_t ChunkSamples(const Conv2dShape& s) {
  const int64_t per = std::max<int64_t>(1, ColsPerSample(s));
  return std::max<int64_t>(1, std::min(s.batch, kMaxWorkspaceFloats / per));
}

void CheckShape(const Conv2dShape& s) {
  LS_CHECK(s.batch >= 0 && s.in_h > 0 && s.in_w > 0 && s.in_c > 0 && s.out_c > 0 &&
           s.kernel_h > 0 && s.kernel_w > 0 && s.stride_h > 0 && s.stride_w > 0 &&
           s.pad_h >= 0 && s.pad_w >= 0)
      << "Conv2d: bad shape";
  LS_CHECK(s.out_h() > 0 && s.out_w() > 0)
      << "Conv2d: kernel " << s.kernel_h << "x" << s.kernel_w << " larger than padded input "
      << s.in_h << "x" << s.in_w << " (pad " << s.pad_h << "," << s.pad_w << ")";
}

// Copy of n floats; short runs (in_c of 1-4 in the first layer) are cheaper as a
// loop than as a call to memcpy.
inline void CopyRun(float* dst, const float* src, int64_t n) {
  if (n <= 8) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  } else {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  }
}

inline void ZeroRun(float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = 0.0f;
}

inline void AddRun(float* __restrict dst, const float* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// Range [lo, hi) of kernel taps k with 0 <= base + k * 1 < extent (dilation 1).
inline void ValidTaps(int64_t base, int64_t kernel, int64_t extent, int64_t* lo, int64_t* hi) {
  *lo = std::min(kernel, std::max<int64_t>(0, -base));
  *hi = std::max(*lo, std::min(kernel, extent - base));
}

// One input channel (a network's first layer on grey images), stride 1, no padding,
// out_c a multiple of 8 up to 64: the im2col matrix would have kernel_h * kernel_w
// columns, a GEMM too narrow for OpenBLAS (0.07 of its peak), so the forward pass is
// direct: per output pixel the out_c accumulators live in AVX registers.
bool IsSingleChannelDirect(const Conv2dShape& s) {
  return s.in_c == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 &&
         s.out_c % 8 == 0 && s.out_c <= 64;
}

template <int kVecs>
LS_INLINE void DirectPixels(const Conv2dShape& s, const float* x, const float* w, float* y, int64_t n0,
                            int64_t n1) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), kh_n = s.kernel_h, kw_n = s.kernel_w;
  for (int64_t n = n0; n < n1; ++n) {
    const float* xn = x + n * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        V8 acc[kVecs];
        for (int v = 0; v < kVecs; ++v) acc[v] = V8{};
        // Taps in (kh, kw) order, the order of the im2col columns.
        for (int64_t kh = 0; kh < kh_n; ++kh) {
          const float* xr = xn + (oh + kh) * s.in_w + ow;
          const float* wr = w + kh * kw_n * s.out_c;
          for (int64_t kw = 0; kw < kw_n; ++kw) {
            const float xv = xr[kw];
            const V8 xb = {xv, xv, xv, xv, xv, xv, xv, xv};
            for (int v = 0; v < kVecs; ++v) {
              V8 wv;
              std::memcpy(&wv, wr + kw * s.out_c + 8 * v, sizeof(V8));
              acc[v] += xb * wv;
            }
          }
        }
        std::memcpy(y + ((n * oh_n + oh) * ow_n + ow) * s.out_c, acc, sizeof(V8) * kVecs);
      }
    }
  }
}

LS_KERNEL_CLONES void SingleChannelDirectForward(const Conv2dShape& s, const float* x, const float* w, float* y,
                                                 int64_t n0, int64_t n1) {
  switch (s.out_c / 8) {
    case 1: DirectPixels<1>(s, x, w, y, n0, n1); return;
    case 2: DirectPixels<2>(s, x, w, y, n0, n1); return;
    case 3: DirectPixels<3>(s, x, w, y, n0, n1); return;
    case 4: DirectPixels<4>(s, x, w, y, n0, n1); return;
    case 5: DirectPixels<5>(s, x, w, y, n0, n1); return;
    case 6: DirectPixels<6>(s, x, w, y, n0, n1); return;
    case 7: DirectPixels<7>(s, x, w, y, n0, n1); return;
    default: DirectPixels<8>(s, x, w, y, n0, n1); return;
  }
}

// Taps [kw0, kw0 + kTaps) of kernel row kh, one sample: dw += the pixels' sum, with
// the taps x out_c accumulators in AVX registers (12 of the 16).
template <int kVecs, int kTaps>
LS_INLINE void DirectFilterTaps(const Conv2dShape& s, const float* xn, const float* dyn, float* dw, int64_t kh,
                                int64_t kw0) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), oc = s.out_c;
  V8 acc[kTaps][kVecs];
  for (int t = 0; t < kTaps; ++t) {
    for (int v = 0; v < kVecs; ++v) acc[t][v] = V8{};
  }
  for (int64_t oh = 0; oh < oh_n; ++oh) {
    const float* xr = xn + (oh + kh) * s.in_w + kw0;
    const float* dyr = dyn + oh * ow_n * oc;
    for (int64_t ow = 0; ow < ow_n; ++ow) {
      V8 d[kVecs];  // V8Unaligned loads stay in registers; a memcpy into d went through the stack
      for (int v = 0; v < kVecs; ++v) d[v] = *reinterpret_cast<const V8Unaligned*>(dyr + ow * oc + 8 * v);
      for (int t = 0; t < kTaps; ++t) {
        const float xv = xr[ow + t];
        const V8 xb = {xv, xv, xv, xv, xv, xv, xv, xv};
        for (int v = 0; v < kVecs; ++v) acc[t][v] += xb * d[v];
      }
    }
  }
  for (int t = 0; t < kTaps; ++t) {
    float* out = dw + (kh * s.kernel_w + kw0 + t) * oc;
    for (int v = 0; v < kVecs; ++v) {
      *reinterpret_cast<V8Unaligned*>(out + 8 * v) += acc[t][v];
    }
  }
}

// The filter gradient of the same single-channel case. Its im2col GEMM (k = taps,
// n = out_c, reduction over every output pixel) ran at 0.11 of OpenBLAS's peak.
// dw(kh, kw, oc) += sum over pixels of x(oh + kh, ow + kw) * dy(oh, ow, oc), sample by
// sample (its dy stays in L2), kernel row by kernel row, a group of taps at a time.
template <int kVecs>
LS_INLINE void DirectFilterSamples(const Conv2dShape& s, const float* x, const float* dy, float* dw, int64_t n0,
                                   int64_t n1) {
  constexpr int kTaps = 12 / kVecs > 0 ? 12 / kVecs : 1;
  const int64_t dy_per = s.out_h() * s.out_w() * s.out_c;
  for (int64_t n = n0; n < n1; ++n) {
    const float* xn = x + n * s.in_h * s.in_w;
    const float* dyn = dy + n * dy_per;
    for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
      int64_t kw0 = 0;
      for (; kw0 + kTaps <= s.kernel_w; kw0 += kTaps) DirectFilterTaps<kVecs, kTaps>(s, xn, dyn, dw, kh, kw0);
      for (; kw0 < s.kernel_w; ++kw0) DirectFilterTaps<kVecs, 1>(s, xn, dyn, dw, kh, kw0);
    }
  }
}

// dw += the filter gradient of samples [n0, n1).
LS_KERNEL_CLONES void SingleChannelDirectFilter(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                                                int64_t n0, int64_t n1) {
  switch (s.out_c / 8) {
    case 1: DirectFilterSamples<1>(s, x, dy, dw, n0, n1); return;
    case 2: DirectFilterSamples<2>(s, x, dy, dw, n0, n1); return;
    case 3: DirectFilterSamples<3>(s, x, dy, dw, n0, n1); return;
    case 4: DirectFilterSamples<4>(s, x, dy, dw, n0, n1); return;
    case 5: DirectFilterSamples<5>(s, x, dy, dw, n0, n1); return;
    case 6: DirectFilterSamples<6>(s, x, dy, dw, n0, n1); return;
    case 7: DirectFilterSamples<7>(s, x, dy, dw, n0, n1); return;
    default: DirectFilterSamples<8>(s, x, dy, dw, n0, n1); return;
  }
}

}  // namespace

size_t Conv2dWorkspaceFloats(const Conv2dShape& s) {
  if (IsPointwise(s)) return 0;  // cols == x, no copy
  return static_cast<size_t>(ChunkSamples(s) * ColsPerSample(s));
}

void Im2col(const Conv2dShape& s, const float* x, float* cols) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), c = s.in_c;
  const int64_t kw_n = s.kernel_w, kh_n = s.kernel_h;
  const int64_t row_len = s.col_cols();
  const int64_t tap_row = kw_n * c;  // floats of one kernel row
  float* out = cols;
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* xn = x + n * s.in_h * s.in_w * c;
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const int64_t ih0 = oh * s.stride_h - s.pad_h;
      int64_t kh_lo, kh_hi;
      ValidTaps(ih0, kh_n, s.in_h, &kh_lo, &kh_hi);
      for (int64_t ow = 0; ow < ow_n; ++ow, out += row_len) {
        const int64_t iw0 = ow * s.stride_w - s.pad_w;
        int64_t kw_lo, kw_hi;
        ValidTaps(iw0, kw_n, s.in_w, &kw_lo, &kw_hi);
        const int64_t head = kw_lo * c, body = (kw_hi - kw_lo) * c, tail = tap_row - head - body;
        ZeroRun(out, kh_lo * tap_row);
        for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
          float* dst = out + kh * tap_row;
          const float* src = xn + ((ih0 + kh) * s.in_w + iw0 + kw_lo) * c;
          ZeroRun(dst, head);
          CopyRun(dst + head, src, body);
          ZeroRun(dst + head + body, tail);
        }
        ZeroRun(out + kh_hi * tap_row, (kh_n - kh_hi) * tap_row);
      }
    }
  }
}

void Col2imAccumulate(const Conv2dShape& s, const float* cols, float* dx) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), c = s.in_c;
  const int64_t kw_n = s.kernel_w, kh_n = s.kernel_h;
  const int64_t row_len = s.col_cols();
  const int64_t tap_row = kw_n * c;
  const float* in = cols;
  for (int64_t n = 0; n < s.batch; ++n) {
    float* dxn = dx + n * s.in_h * s.in_w * c;
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const int64_t ih0 = oh * s.stride_h - s.pad_h;
      int64_t kh_lo, kh_hi;
      ValidTaps(ih0, kh_n, s.in_h, &kh_lo, &kh_hi);
      for (int64_t ow = 0; ow < ow_n; ++ow, in += row_len) {
        const int64_t iw0 = ow * s.stride_w - s.pad_w;
        int64_t kw_lo, kw_hi;
        ValidTaps(iw0, kw_n, s.in_w, &kw_lo, &kw_hi);
        const int64_t head = kw_lo * c, body = (kw_hi - kw_lo) * c;
        for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
          AddRun(dxn + ((ih0 + kh) * s.in_w + iw0 + kw_lo) * c, in + kh * tap_row + head, body);
        }
      }
    }
  }
}

void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, float* y,
                   float* workspace) {
  CheckShape(s);
  const int64_t k = s.col_cols(), pix = s.out_h() * s.out_w();
  if (IsPointwise(s)) {
    Sgemm(false, false, s.col_rows(), s.out_c, k, 1.0f, x, k, w, s.out_c, 0.0f, y, s.out_c);
    return;
  }
  if (IsSingleChannelDirect(s)) {
    ParallelFor(ParallelParts(s.batch), s.batch, [&](int, int64_t n0, int64_t n1) {
      SingleChannelDirectForward(s, x, w, y, n0, n1);
    });
    return;
  }
  const int64_t chunk = ChunkSamples(s), in_per = s.in_h * s.in_w * s.in_c;
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t cn = std::min(chunk, s.batch - n0);
    ParallelRanges(ParallelParts(cn), cn, [&](int, int64_t b0, int64_t b1) {
      if (b1 == b0) return;
      float* cols = workspace + b0 * ColsPerSample(s);
      ForEachCachePiece(s, b0, b1, [&](int64_t first, const Conv2dShape& piece) {
        Im2col(piece, x + (n0 + first) * in_per, cols);
        Sgemm(false, false, piece.batch * pix, s.out_c, k, 1.0f, cols, k, w, s.out_c, 0.0f,
              y + (n0 + first) * pix * s.out_c, s.out_c);
      });
    });
  }
}

void Conv2dBackwardData(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                        float* workspace) {
  CheckShape(s);
  const int64_t k = s.col_cols(), pix = s.out_h() * s.out_w();
  if (IsPointwise(s)) {
    // dx (NHW x Cin) = dy (NHW x Cout) * w^T.
    Sgemm(false, true, s.col_rows(), k, s.out_c, 1.0f, dy, s.out_c, w, s.out_c, 0.0f, dx, k);
    return;
  }
  const int64_t in_per = s.in_h * s.in_w * s.in_c;
  const int64_t chunk = ChunkSamples(s);
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t cn = std::min(chunk, s.batch - n0);
    ParallelRanges(ParallelParts(cn), cn, [&](int, int64_t b0, int64_t b1) {
      if (b1 == b0) return;
      float* cols = workspace + b0 * ColsPerSample(s);
      ForEachCachePiece(s, b0, b1, [&](int64_t first, const Conv2dShape& piece) {
        float* dxp = dx + (n0 + first) * in_per;
        std::fill(dxp, dxp + piece.batch * in_per, 0.0f);
        Sgemm(false, true, piece.batch * pix, k, s.out_c, 1.0f, dy + (n0 + first) * pix * s.out_c, s.out_c, w,
              s.out_c, 0.0f, cols, k);
        Col2imAccumulate(piece, cols, dxp);
      });
    });
  }
}

void Conv2dBackwardFilter(const Conv2dShape& s, const float* x, const float* dy, float beta,
                          float* dw, float* workspace) {
  CheckShape(s);
  LS_CHECK(beta == 0.0f || beta == 1.0f) << "Conv2dBackwardFilter: beta " << beta;
  const int64_t k = s.col_cols(), pix = s.out_h() * s.out_w();
  if (IsPointwise(s)) {
    Sgemm(true, false, k, s.out_c, s.col_rows(), 1.0f, x, k, dy, s.out_c, beta, dw, s.out_c);
    return;
  }
  if (s.batch == 0) {
    Sgemm(true, false, k, s.out_c, 0, 1.0f, x, k, dy, s.out_c, beta, dw, s.out_c);
    return;
  }
  const int64_t chunk = ChunkSamples(s), in_per = s.in_h * s.in_w * s.in_c;
  const int64_t dw_n = k * s.out_c;
  std::vector<float> partial;  // parts 1.. of a parallel chunk: their own dw, summed in part order
  if (IsSingleChannelDirect(s)) {
    if (beta == 0.0f) std::fill(dw, dw + dw_n, 0.0f);
    const int parts = ParallelParts(s.batch);
    partial.assign(static_cast<size_t>((parts - 1) * dw_n), 0.0f);
    ParallelFor(parts, s.batch, [&](int part, int64_t n0, int64_t n1) {
      SingleChannelDirectFilter(s, x, dy, part == 0 ? dw : partial.data() + (part - 1) * dw_n, n0, n1);
    });
    AddPartials(partial, parts, dw_n, dw);
    return;
  }
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t cn = std::min(chunk, s.batch - n0);
    const int parts = ParallelParts(cn);
    partial.resize(static_cast<size_t>((parts - 1) * dw_n));
    ParallelRanges(parts, cn, [&](int part, int64_t b0, int64_t b1) {
      float* out = part == 0 ? dw : partial.data() + (part - 1) * dw_n;
      float b = part == 0 ? (n0 == 0 ? beta : 1.0f) : 0.0f;
      float* cols = workspace + b0 * ColsPerSample(s);
      ForEachCachePiece(s, b0, b1, [&](int64_t first, const Conv2dShape& piece) {
        Im2col(piece, x + (n0 + first) * in_per, cols);
        // dw (KhKwCin x Cout) = cols^T * dy; later pieces accumulate.
        Sgemm(true, false, k, s.out_c, piece.batch * pix, 1.0f, cols, k, dy + (n0 + first) * pix * s.out_c,
              s.out_c, b, out, s.out_c);
        b = 1.0f;
      });
    });
    AddPartials(partial, parts, dw_n, dw);
  }
}

}  // namespace lockstep::kernels::cpu
