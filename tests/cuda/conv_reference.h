// Direct (no im2col) 2-D convolution in double for the CUDA conv tests, with the same
// layouts as kernels/cpu/conv.h (x NHWC, w HWIO, y NHWC), plus the shapes the tests
// share (the shape maker, describer and product iteration come from
// tests/kernels/conv_shapes.h, shared with the CPU conv test). Each result element also
// carries the sum of |terms| that formed it: the scale of an fp32 rounding error, so a
// tolerance can be relative to that even where the terms cancel. Header-only,
// test-only; pure.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "kernels/cpu/conv.h"
#include "tests/kernels/conv_shapes.h"

namespace lockstep::kernels::cuda::testing {

using ConvShape = ::lockstep::kernels::cpu::Conv2dShape;
using ::lockstep::kernels::testing::DescribeConv;
using ::lockstep::kernels::testing::ForEachConvProduct;
using ::lockstep::kernels::testing::MakeConvShape;

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

// The layers of the Fashion-MNIST CNN (batch 64): 28x28x1 -> 32 and 14x14x32 -> 64,
// 3x3, padded to keep the size.
inline ConvShape FashionMnistConv1() { return MakeConvShape(64, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1); }
inline ConvShape FashionMnistConv2() { return MakeConvShape(64, 14, 14, 32, 64, 3, 3, 1, 1, 1, 1); }

struct ConvReference {
  std::vector<double> value;
  std::vector<double> magnitude;  // sum of |terms| of each element

  explicit ConvReference(int64_t n)
      : value(static_cast<size_t>(n), 0.0), magnitude(static_cast<size_t>(n), 0.0) {}
  void AddTerm(int64_t i, double term) {
    value[static_cast<size_t>(i)] += term;
    magnitude[static_cast<size_t>(i)] += std::fabs(term);
  }
};

inline ConvReference DirectConvForward(const ConvShape& s, const std::vector<float>& x,
                                       const std::vector<float>& w) {
  ConvReference y(s.col_rows() * s.out_c);
  ForEachConvProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    y.AddTerm(yi, static_cast<double>(x[xi]) * w[wi]);
  });
  return y;
}

inline ConvReference DirectConvBackwardData(const ConvShape& s, const std::vector<float>& dy,
                                            const std::vector<float>& w) {
  ConvReference dx(s.batch * s.in_h * s.in_w * s.in_c);
  ForEachConvProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    dx.AddTerm(xi, static_cast<double>(dy[yi]) * w[wi]);
  });
  return dx;
}

// The filter gradient alone (beta 0); PlusOldGradient gives the beta 1 result.
inline ConvReference DirectConvBackwardFilter(const ConvShape& s, const std::vector<float>& x,
                                              const std::vector<float>& dy) {
  ConvReference dw(s.col_cols() * s.out_c);
  ForEachConvProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    dw.AddTerm(wi, static_cast<double>(x[xi]) * dy[yi]);
  });
  return dw;
}

// dw_old + dw (backward filter with beta 1): the old value is one more term.
inline ConvReference PlusOldGradient(ConvReference dw, const std::vector<float>& dw_old) {
  for (size_t i = 0; i < dw.value.size(); ++i) dw.AddTerm(static_cast<int64_t>(i), dw_old[i]);
  return dw;
}

// Every element: |got - value| <= rel * magnitude + abs + max_magnitude_share * (the
// largest magnitude of any element). The magnitude term scales with the rounding error
// of an fp32 sum of those terms; the last one (0 unless asked for) is for FFT-style
// algorithms (cuDNN's), whose error follows the size of the whole signal. NaN fails.
// Reports the count and the first few mismatches.
inline ::testing::AssertionResult MatchesReference(const std::vector<float>& got,
                                                   const ConvReference& want, double rel,
                                                   double abs = 1e-6,
                                                   double max_magnitude_share = 0.0) {
  if (got.size() != want.value.size()) {
    return ::testing::AssertionFailure()
           << "size " << got.size() << " != reference size " << want.value.size();
  }
  double max_magnitude = 0.0;
  for (const double m : want.magnitude) max_magnitude = std::max(max_magnitude, m);
  const double slack = abs + max_magnitude_share * max_magnitude;
  int64_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want.value[i]);
    if (!(err <= rel * want.magnitude[i] + slack)) {  // NaN fails too
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
