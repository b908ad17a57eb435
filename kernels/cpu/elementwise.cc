// Elementwise CPU kernels. Plain loops that g++ -O3 vectorises (built for AVX2
// and baseline x86-64, see fast_math.h); transcendental functions come from
// fast_math.h, not libm. All of them are deterministic.
#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

}  // namespace

LS_KERNEL_CLONES void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

namespace {

// acc[c] += column c0 + c of dy summed over rows [r0, r1), for c < nc, in row order.
LS_KERNEL_CLONES void ColumnSums(const float* dy, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t nc,
                                 double* acc) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* row = dy + r * cols + c0;
    for (int64_t c = 0; c < nc; ++c) acc[c] += row[c];
  }
}

}  // namespace

void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta, float* dbias) {
  // Column sums accumulated in double (rows can be batch*H*W, tens of thousands), over
  // column blocks; with several threads each sums a contiguous range of rows and the
  // parts are added in part order, so the result is fixed for a given thread count.
  constexpr int64_t kBlock = 256;
  const int parts = static_cast<int>(std::min<int64_t>(ElementwiseParts(rows * cols), std::max<int64_t>(rows, 1)));
  std::vector<double> partial;
  for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
    const int64_t nc = std::min(kBlock, cols - c0);
    partial.assign(static_cast<size_t>(parts * nc), 0.0);
    ParallelFor(parts, rows, [&](int part, int64_t r0, int64_t r1) {
      ColumnSums(dy, cols, r0, r1, c0, nc, partial.data() + part * nc);
    });
    for (int64_t c = 0; c < nc; ++c) {
      double sum = partial[static_cast<size_t>(c)];
      for (int p = 1; p < parts; ++p) sum += partial[static_cast<size_t>(p * nc + c)];
      const float prev = beta == 0.0f ? 0.0f : beta * dbias[c0 + c];
      dbias[c0 + c] = static_cast<float>(prev + sum);
    }
  }
}

bool ActivationDerivativeFromOutput(Activation act) { return act != Activation::kGelu; }

namespace {

void ActivationForwardRange(Activation act, const float* x, float* y, int64_t n);

LS_KERNEL_CLONES void BiasActivationRows(float* y, const float* bias, int64_t rows, int64_t cols, Activation act) {
  if (act == Activation::kRelu) {
    for (int64_t r = 0; r < rows; ++r) {
      float* row = y + r * cols;
      if (bias) {
        for (int64_t c = 0; c < cols; ++c) row[c] = std::max(row[c] + bias[c], 0.0f);
      } else {
        for (int64_t c = 0; c < cols; ++c) row[c] = std::max(row[c], 0.0f);
      }
    }
    return;
  }
  // Rows stay in cache between the two passes.
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
    if (bias) {
      for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
    }
    if (act != Activation::kIdentity) ActivationForwardRange(act, row, row, cols);
  }
}

LS_KERNEL_CLONES void ActivationForwardRange(Activation act, const float* x, float* y, int64_t n) {
  switch (act) {
    case Activation::kIdentity:
      if (x != y) std::copy(x, x + n, y);
      return;
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
      return;
    case Activation::kTanh:
      for (int64_t i = 0; i < n; ++i) y[i] = FastTanh(x[i]);
      return;
    case Activation::kSigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = FastSigmoid(x[i]);
      return;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        const float t = FastTanh(kGeluC * (v + kGeluA * v * v * v));
        y[i] = 0.5f * v * (1.0f + t);
      }
      return;
  }
  LS_FATAL() << "ActivationForward: unknown activation " << static_cast<int>(act);
}

LS_KERNEL_CLONES void ActivationBackwardRange(Activation act, const float* x, const float* y, const float* dy, float* dx,
                        int64_t n) {
  switch (act) {
    case Activation::kIdentity:
      if (dx != dy) std::copy(dy, dy + n, dx);
      return;
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
      return;
    case Activation::kTanh:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
      return;
    case Activation::kSigmoid:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
      return;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        const float t = FastTanh(kGeluC * (v + kGeluA * v * v * v));
        const float dt = kGeluC * (1.0f + 3.0f * kGeluA * v * v) * (1.0f - t * t);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
      }
      return;
  }
  LS_FATAL() << "ActivationBackward: unknown activation " << static_cast<int>(act);
}

}  // namespace

// Large calls are split over threads when several BLAS threads are configured
// (parallel.h); each range runs the vectorised loops above.
void BiasActivationForward(float* y, const float* bias, int64_t rows, int64_t cols, Activation act) {
  LS_CHECK(ActivationDerivativeFromOutput(act)) << "BiasActivationForward cannot fuse GELU";
  const int parts = std::min<int64_t>(ElementwiseParts(rows * cols), std::max<int64_t>(rows, 1));
  ParallelFor(parts, rows, [&](int, int64_t r0, int64_t r1) {
    BiasActivationRows(y + r0 * cols, bias, r1 - r0, cols, act);
  });
}

void ActivationForward(Activation act, const float* x, float* y, int64_t n) {
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t b, int64_t e) {
    ActivationForwardRange(act, x + b, y + b, e - b);
  });
}

void ActivationBackward(Activation act, const float* x, const float* y, const float* dy, float* dx,
                        int64_t n) {
  ParallelFor(ElementwiseParts(n), n, [&](int, int64_t b, int64_t e) {
    ActivationBackwardRange(act, x + b, y + b, dy + b, dx + b, e - b);
  });
}

LS_KERNEL_CLONES void Scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

LS_KERNEL_CLONES void Axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

double SumOfSquares(const float* x, int64_t n) {
  // Eight interleaved double partial sums, combined in a fixed tree: the order
  // depends only on n, so the result is bitwise reproducible.
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const double v = x[i + j];
      part[j] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double v = x[i];
    part[j] += v * v;
  }
  return ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

}  // namespace lockstep::kernels::cpu
