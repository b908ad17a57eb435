// Direct (no im2col) 2-D convolution in double for the CUDA conv tests, with the same
// layouts as kernels/cpu/conv.h (x NHWC, w HWIO, y NHWC), plus the shape family the
// tests share. Each result element also carries the sum of |terms| that formed it:
// the scale of an fp32 rounding error, so a tolerance can be relative to that even
// where the terms cancel. Header-only, test-only; pure.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/conv.h"

namespace lockstep::kernels::cuda::testing {

using ConvShape = ::lockstep::kernels::cpu::Conv2dShape;

inline ConvShape MakeConvShape(int64_t n, int64_t h, int64_t w, int64_t cin, int64_t cout,
                               int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                               int64_t pw) {
  ConvShape s;
  s.batch = n;
  s.in_h = h;
  s.in_w = w;
  s.in_c = cin;
  s.out_c = cout;
  s.kernel_h = kh;
  s.kernel_w = kw;
  s.stride_h = sh;
  s.stride_w = sw;
  s.pad_h = ph;
  s.pad_w = pw;
  return s;
}

inline std::string DescribeConv(const ConvShape& s) {
  std::ostringstream os;
  os << "N=" << s.batch << " HxWxC=" << s.in_h << "x" << s.in_w << "x" << s.in_c
     << " out_c=" << s.out_c << " kernel=" << s.kernel_h << "x" << s.kernel_w
     << " stride=" << s.stride_h << "," << s.stride_w << " pad=" << s.pad_h << "," << s.pad_w;
  return os.str();
}

// Padding, strides 2 and 3, anisotropic kernels/strides/padding, 1x1 (pointwise and
// strided), in_c 1 and 3, batch 1 and 3, windows wider than the input interior and
// strides wider than the kernel (inputs no window reads).
inline std::vector<ConvShape> ConvShapeFamily() {
  return {
      MakeConvShape(1, 5, 5, 1, 2, 3, 3, 1, 1, 1, 1),
      MakeConvShape(3, 7, 6, 3, 4, 3, 3, 2, 2, 1, 1),
      MakeConvShape(1, 9, 8, 3, 5, 2, 3, 2, 1, 0, 1),
      MakeConvShape(3, 8, 7, 1, 6, 3, 2, 1, 2, 2, 0),
      MakeConvShape(3, 6, 5, 4, 3, 1, 1, 1, 1, 0, 0),  // pointwise: no im2col
      MakeConvShape(3, 6, 5, 3, 3, 1, 1, 2, 2, 0, 0),  // 1x1 but strided: im2col
      MakeConvShape(1, 4, 4, 2, 3, 5, 5, 1, 1, 2, 2),  // kernel wider than the interior
      MakeConvShape(3, 5, 7, 3, 2, 4, 1, 3, 1, 1, 0),
      MakeConvShape(3, 9, 9, 2, 3, 2, 2, 3, 3, 0, 0),  // stride > kernel: gaps
      MakeConvShape(1, 3, 3, 3, 4, 3, 3, 1, 1, 0, 0),  // one output pixel
  };
}

struct ConvReference {
  std::vector<double> value;
  std::vector<double> magnitude;  // sum of |terms| of each element
};

// Calls f(y_base, x_base, w_base) for every (output pixel, tap) that reads the input
// (padding taps skipped): the flat offsets of y(n, oh, ow, 0), x(n, ih, iw, 0) and
// w(kh, kw, 0, 0).
template <typename F>
void ForEachConvTap(const ConvShape& s, F f) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w();
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
          for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const int64_t ih = oh * s.stride_h - s.pad_h + kh;
            const int64_t iw = ow * s.stride_w - s.pad_w + kw;
            if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
            f(((n * oh_n + oh) * ow_n + ow) * s.out_c, ((n * s.in_h + ih) * s.in_w + iw) * s.in_c,
              (kh * s.kernel_w + kw) * s.in_c * s.out_c);
          }
        }
      }
    }
  }
}

inline void AddTerm(ConvReference& r, int64_t i, double term) {
  r.value[i] += term;
  r.magnitude[i] += std::fabs(term);
}

inline ConvReference DirectConvForward(const ConvShape& s, const std::vector<float>& x,
                                       const std::vector<float>& w) {
  const size_t n = static_cast<size_t>(s.col_rows() * s.out_c);
  ConvReference y{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  ForEachConvTap(s, [&](int64_t yb, int64_t xb, int64_t wb) {
    for (int64_t ci = 0; ci < s.in_c; ++ci) {
      for (int64_t co = 0; co < s.out_c; ++co) {
        AddTerm(y, yb + co, static_cast<double>(x[xb + ci]) * w[wb + ci * s.out_c + co]);
      }
    }
  });
  return y;
}

inline ConvReference DirectConvBackwardData(const ConvShape& s, const std::vector<float>& dy,
                                            const std::vector<float>& w) {
  const size_t n = static_cast<size_t>(s.batch * s.in_h * s.in_w * s.in_c);
  ConvReference dx{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  ForEachConvTap(s, [&](int64_t yb, int64_t xb, int64_t wb) {
    for (int64_t ci = 0; ci < s.in_c; ++ci) {
      for (int64_t co = 0; co < s.out_c; ++co) {
        AddTerm(dx, xb + ci, static_cast<double>(dy[yb + co]) * w[wb + ci * s.out_c + co]);
      }
    }
  });
  return dx;
}

// The filter gradient alone (beta 0); a test wanting beta 1 adds the old dw itself.
inline ConvReference DirectConvBackwardFilter(const ConvShape& s, const std::vector<float>& x,
                                              const std::vector<float>& dy) {
  const size_t n = static_cast<size_t>(s.col_cols() * s.out_c);
  ConvReference dw{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  ForEachConvTap(s, [&](int64_t yb, int64_t xb, int64_t wb) {
    for (int64_t ci = 0; ci < s.in_c; ++ci) {
      for (int64_t co = 0; co < s.out_c; ++co) {
        AddTerm(dw, wb + ci * s.out_c + co, static_cast<double>(x[xb + ci]) * dy[yb + co]);
      }
    }
  });
  return dw;
}

// Every element: |got - value| <= rel * magnitude + abs (magnitude: the sum of |terms|,
// so the bound scales with the rounding error of an fp32 sum of those terms). Reports
// the count and the first few mismatches.
inline ::testing::AssertionResult MatchesReference(const std::vector<float>& got,
                                                   const ConvReference& want, double rel,
                                                   double abs = 1e-6) {
  if (got.size() != want.value.size()) {
    return ::testing::AssertionFailure()
           << "size " << got.size() << " != reference size " << want.value.size();
  }
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want.value[i]);
    if (!(err <= rel * want.magnitude[i] + abs)) {  // NaN fails too
      if (++bad <= 5) {
        first << "\n  [" << i << "] got " << got[i] << " want " << want.value[i] << " (|terms| "
              << want.magnitude[i] << ")";
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements differ" << first.str();
}

}  // namespace lockstep::kernels::cuda::testing
