// Layer normalisation: per-row statistics in double, column sums of the
// parameter gradients in a fixed row order (deterministic).
#include "kernels/cpu/layer_norm.h"

#include <cmath>
#include <vector>

namespace lockstep::kernels::cpu {

void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                      int64_t cols, float eps, float* y, float* mean, float* rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    double s = 0.0;
    for (int64_t c = 0; c < cols; ++c) s += xr[c];
    const double mu = s / static_cast<double>(cols);
    double v = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      const double d = xr[c] - mu;
      v += d * d;
    }
    const float rs = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(cols) + eps));
    const float m = static_cast<float>(mu);
    mean[r] = m;
    rstd[r] = rs;
    float* yr = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * rs * (1.0f + gamma[c]) + beta[c];
  }
}

void LayerNormBackward(const float* x, const float* gamma, const float* mean, const float* rstd,
                       const float* dy, int64_t rows, int64_t cols, float grad_beta, float* dx,
                       float* dgamma, float* dbeta) {
  std::vector<double> dg(static_cast<size_t>(cols), 0.0), db(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* gr = dy + r * cols;
    const float m = mean[r], rs = rstd[r];
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - m) * rs;
      const float dxhat = gr[c] * (1.0f + gamma[c]);
      dg[static_cast<size_t>(c)] += static_cast<double>(gr[c]) * xhat;
      db[static_cast<size_t>(c)] += gr[c];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += static_cast<double>(dxhat) * xhat;
    }
    if (dx == nullptr) continue;
    const float a = static_cast<float>(sum_dxhat / static_cast<double>(cols));
    const float b = static_cast<float>(sum_dxhat_xhat / static_cast<double>(cols));
    float* dr = dx + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - m) * rs;
      dr[c] = rs * (gr[c] * (1.0f + gamma[c]) - a - xhat * b);
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    const size_t i = static_cast<size_t>(c);
    dgamma[c] = static_cast<float>((grad_beta == 0.0f ? 0.0 : grad_beta * dgamma[c]) + dg[i]);
    dbeta[c] = static_cast<float>((grad_beta == 0.0f ? 0.0 : grad_beta * dbeta[c]) + db[i]);
  }
}

}  // namespace lockstep::kernels::cpu
