// Layer normalisation: per-row statistics in double (eight interleaved partial
// sums, combined in a fixed order), column sums of the parameter gradients in a
// fixed row order (deterministic). Loops are written so g++ -O3 vectorises them
// (AVX2 and baseline clones, see fast_math.h).
#include "kernels/cpu/layer_norm.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/fast_math.h"

namespace lockstep::kernels::cpu {
namespace {

LS_INLINE double Combine(const double* p) {
  return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

// sum_c x[c] and sum_c (x[c] - mu)^2 in double.
LS_INLINE double RowSum(const float* x, int64_t n) {
  double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    for (int j = 0; j < 8; ++j) p[j] += x[c + j];
  }
  for (int j = 0; c < n; ++c, ++j) p[j] += x[c];
  return Combine(p);
}

LS_INLINE double RowSquaredDeviation(const float* x, int64_t n, double mu) {
  double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    for (int j = 0; j < 8; ++j) {
      const double d = x[c + j] - mu;
      p[j] += d * d;
    }
  }
  for (int j = 0; c < n; ++c, ++j) {
    const double d = x[c] - mu;
    p[j] += d * d;
  }
  return Combine(p);
}

// sum_c a[c] and sum_c a[c] * b[c] in double.
LS_INLINE void RowDots(const float* a, const float* b, int64_t n, double* sum_a, double* sum_ab) {
  double p[8] = {0, 0, 0, 0, 0, 0, 0, 0}, q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    for (int j = 0; j < 8; ++j) {
      p[j] += a[c + j];
      q[j] += static_cast<double>(a[c + j]) * b[c + j];
    }
  }
  for (int j = 0; c < n; ++c, ++j) {
    p[j] += a[c];
    q[j] += static_cast<double>(a[c]) * b[c];
  }
  *sum_a = Combine(p);
  *sum_ab = Combine(q);
}

}  // namespace

LS_KERNEL_CLONES void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                                       int64_t cols, float eps, float* y, float* mean, float* rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const double mu = RowSum(xr, cols) / static_cast<double>(cols);
    const double v = RowSquaredDeviation(xr, cols, mu);
    const float rs = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(cols) + eps));
    const float m = static_cast<float>(mu);
    mean[r] = m;
    rstd[r] = rs;
    float* yr = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * rs * (1.0f + gamma[c]) + beta[c];
  }
}

LS_KERNEL_CLONES void LayerNormBackward(const float* x, const float* gamma, const float* mean,
                                        const float* rstd, const float* dy, int64_t rows, int64_t cols,
                                        float grad_beta, float* dx, float* dgamma, float* dbeta) {
  std::vector<double> dg(static_cast<size_t>(cols), 0.0), db(static_cast<size_t>(cols), 0.0);
  std::vector<float> xhat(static_cast<size_t>(cols)), dxhat(static_cast<size_t>(cols));
  double* dgp = dg.data();
  double* dbp = db.data();
  float* xh = xhat.data();
  float* dxh = dxhat.data();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* gr = dy + r * cols;
    const float m = mean[r], rs = rstd[r];
    for (int64_t c = 0; c < cols; ++c) {
      xh[c] = (xr[c] - m) * rs;
      dxh[c] = gr[c] * (1.0f + gamma[c]);
      dgp[c] += static_cast<double>(gr[c]) * xh[c];
      dbp[c] += gr[c];
    }
    if (dx == nullptr) continue;
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    RowDots(dxh, xh, cols, &sum_dxhat, &sum_dxhat_xhat);
    const float a = static_cast<float>(sum_dxhat / static_cast<double>(cols));
    const float b = static_cast<float>(sum_dxhat_xhat / static_cast<double>(cols));
    float* dr = dx + r * cols;
    for (int64_t c = 0; c < cols; ++c) dr[c] = rs * (dxh[c] - a - xh[c] * b);
  }
  for (int64_t c = 0; c < cols; ++c) {
    const size_t i = static_cast<size_t>(c);
    dgamma[c] = static_cast<float>((grad_beta == 0.0f ? 0.0 : grad_beta * dgamma[c]) + dg[i]);
    dbeta[c] = static_cast<float>((grad_beta == 0.0f ? 0.0 : grad_beta * dbeta[c]) + db[i]);
  }
}

}  // namespace lockstep::kernels::cpu
