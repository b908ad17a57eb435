// Causal attention: per (sample, head) S = Q K^T (GEMM), masked row softmax,
// O = P V (GEMM); backward through the same GEMMs and the softmax Jacobian.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/gemm.h"

namespace lockstep::kernels::cpu {
namespace {

// In place over a (T, T) block of raw scores: row i becomes softmax(scale * s[i, 0..i]),
// zeros beyond the diagonal.
void CausalSoftmaxRows(float* p, int64_t t, float scale) {
  for (int64_t i = 0; i < t; ++i) {
    float* row = p + i * t;
    float mx = row[0] * scale;
    for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j] * scale);
    double sum = 0.0;
    for (int64_t j = 0; j <= i; ++j) {
      row[j] = std::exp(row[j] * scale - mx);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
    for (int64_t j = i + 1; j < t; ++j) row[j] = 0.0f;
  }
}

}  // namespace

void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs, float* out) {
  const int64_t t = s.seq, d = s.head_dim, dim = s.dim(), ld = 3 * dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* base = qkv + b * t * ld;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* q = base + h * d;
      const float* k = base + dim + h * d;
      const float* v = base + 2 * dim + h * d;
      float* p = probs + (b * s.heads + h) * t * t;
      Sgemm(false, true, t, t, d, 1.0f, q, ld, k, ld, 0.0f, p, t);  // S = Q K^T
      CausalSoftmaxRows(p, t, scale);
      Sgemm(false, false, t, d, t, 1.0f, p, t, v, ld, 0.0f, out + b * t * dim + h * d, dim);
    }
  }
}

void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                             const float* dout, float* dqkv, float* workspace) {
  const int64_t t = s.seq, d = s.head_dim, dim = s.dim(), ld = 3 * dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  float* dp = workspace;  // (T, T)
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* base = qkv + b * t * ld;
    float* dbase = dqkv + b * t * ld;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* q = base + h * d;
      const float* k = base + dim + h * d;
      const float* v = base + 2 * dim + h * d;
      const float* p = probs + (b * s.heads + h) * t * t;
      const float* dout_h = dout + b * t * dim + h * d;
      Sgemm(false, true, t, t, d, 1.0f, dout_h, dim, v, ld, 0.0f, dp, t);  // dP = dO V^T
      Sgemm(true, false, t, d, t, 1.0f, p, t, dout_h, dim, 0.0f, dbase + 2 * dim + h * d,
            ld);  // dV = P^T dO
      // dS = scale * P .* (dP - rowsum(P .* dP)); zero above the diagonal since P is.
      for (int64_t i = 0; i < t; ++i) {
        const float* pr = p + i * t;
        float* dr = dp + i * t;
        double dot = 0.0;
        for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(pr[j]) * dr[j];
        const float fdot = static_cast<float>(dot);
        for (int64_t j = 0; j <= i; ++j) dr[j] = scale * pr[j] * (dr[j] - fdot);
        for (int64_t j = i + 1; j < t; ++j) dr[j] = 0.0f;
      }
      Sgemm(false, false, t, d, t, 1.0f, dp, t, k, ld, 0.0f, dbase + h * d, ld);        // dQ = dS K
      Sgemm(true, false, t, d, t, 1.0f, dp, t, q, ld, 0.0f, dbase + dim + h * d, ld);   // dK = dS^T Q
    }
  }
}

}  // namespace lockstep::kernels::cpu
