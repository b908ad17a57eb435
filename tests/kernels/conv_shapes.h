// Conv2d test helpers shared by the CPU conv test (tests/kernels/conv_test.cc) and the
// CUDA conv tests' direct reference (tests/cuda/conv_reference.h): a shape maker, a
// describer for failure messages, and the iteration over the (output, input, filter)
// products of a direct convolution. Layouts as kernels/cpu/conv.h: x NHWC, w HWIO,
// y NHWC. Header-only and CUDA-free (tests/kernels is built without CUDA).
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/cpu/conv.h"

namespace lockstep::kernels::testing {

inline cpu::Conv2dShape MakeConvShape(int64_t n, int64_t h, int64_t w, int64_t cin, int64_t cout,
                                      int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                      int64_t pw) {
  cpu::Conv2dShape s;
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

inline std::string DescribeConv(const cpu::Conv2dShape& s) {
  std::ostringstream os;
  os << "N=" << s.batch << " HxWxC=" << s.in_h << "x" << s.in_w << "x" << s.in_c
     << " out_c=" << s.out_c << " kernel=" << s.kernel_h << "x" << s.kernel_w
     << " stride=" << s.stride_h << "," << s.stride_w << " pad=" << s.pad_h << "," << s.pad_w;
  return os.str();
}

// Calls f(y_base, x_base, w_base) for every (output pixel, tap) that reads the input
// (padding taps skipped): the flat offsets of y(n, oh, ow, 0), x(n, ih, iw, 0) and
// w(kh, kw, 0, 0).
template <typename F>
void ForEachConvTap(const cpu::Conv2dShape& s, F f) {
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

// Calls f(x_index, w_index, y_index) for every product x * w of the convolution: y(n,
// oh, ow, co) takes x(n, ih, iw, ci) * w(kh, kw, ci, co) for every in-bounds tap. A
// fixed order (the taps', then ci, then co), so sums over the products repeat exactly.
template <typename F>
void ForEachConvProduct(const cpu::Conv2dShape& s, F f) {
  ForEachConvTap(s, [&](int64_t y_base, int64_t x_base, int64_t w_base) {
    for (int64_t ci = 0; ci < s.in_c; ++ci) {
      for (int64_t co = 0; co < s.out_c; ++co) {
        f(x_base + ci, w_base + ci * s.out_c + co, y_base + co);
      }
    }
  });
}

}  // namespace lockstep::kernels::testing
