// Naive double-precision causal attention, forward and backward, for the tests of
// kernels/cuda/attention (the CPU kernel needs OpenBLAS, which the GPU test bundle
// lacks). Written from the math, with its own indexing, not from the kernels:
//   S = Q K^T / sqrt(d) masked to j <= i, P = softmax_rows(S), O = P V;
//   dV = P^T dO, dP = dO V^T, dS = P .* (dP - rowsum(P .* dP)),
//   dQ = dS K / sqrt(d), dK = dS^T Q / sqrt(d).
// Layouts as kernels/cpu/attention.h. Header-only; pure functions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/attention.h"

namespace lockstep::kernels::cuda::testing {

// Views of one sample's flat qkv / out / probs arrays by (position, head, column).
class AttentionRefIndex {
 public:
  explicit AttentionRefIndex(const cpu::AttentionShape& s) : s_(s) {}
  // part 0, 1, 2 = Q, K, V.
  size_t Qkv(int64_t b, int64_t t, int part, int64_t h, int64_t c) const {
    const int64_t row = b * s_.seq + t;
    return static_cast<size_t>(row * 3 * s_.dim() + part * s_.dim() + h * s_.head_dim + c);
  }
  size_t Out(int64_t b, int64_t t, int64_t h, int64_t c) const {
    return static_cast<size_t>((b * s_.seq + t) * s_.dim() + h * s_.head_dim + c);
  }
  size_t Probs(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return static_cast<size_t>(((b * s_.heads + h) * s_.seq + i) * s_.seq + j);
  }

 private:
  cpu::AttentionShape s_;
};

inline size_t QkvSize(const cpu::AttentionShape& s) {
  return static_cast<size_t>(s.batch * s.seq * 3 * s.dim());
}
inline size_t OutSize(const cpu::AttentionShape& s) {
  return static_cast<size_t>(s.batch * s.seq * s.dim());
}
inline size_t ProbsSize(const cpu::AttentionShape& s) {
  return static_cast<size_t>(s.batch * s.heads * s.seq * s.seq);
}

// probs and out are resized and overwritten.
inline void ReferenceAttentionForward(const cpu::AttentionShape& s, const std::vector<double>& qkv,
                                      std::vector<double>* probs, std::vector<double>* out) {
  const AttentionRefIndex at(s);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  probs->assign(ProbsSize(s), 0.0);
  out->assign(OutSize(s), 0.0);
  std::vector<double> score(static_cast<size_t>(s.seq));
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      for (int64_t i = 0; i < s.seq; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < s.head_dim; ++c) {
            dot += qkv[at.Qkv(b, i, 0, h, c)] * qkv[at.Qkv(b, j, 1, h, c)];
          }
          score[j] = dot * scale;
          mx = std::max(mx, score[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(score[j] - mx);
        for (int64_t j = 0; j <= i; ++j)
          (*probs)[at.Probs(b, h, i, j)] = std::exp(score[j] - mx) / sum;
        for (int64_t c = 0; c < s.head_dim; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j <= i; ++j) {
            acc += (*probs)[at.Probs(b, h, i, j)] * qkv[at.Qkv(b, j, 2, h, c)];
          }
          (*out)[at.Out(b, i, h, c)] = acc;
        }
      }
    }
  }
}

// dqkv is resized and overwritten; probs from ReferenceAttentionForward.
inline void ReferenceAttentionBackward(const cpu::AttentionShape& s, const std::vector<double>& qkv,
                                       const std::vector<double>& probs,
                                       const std::vector<double>& dout, std::vector<double>* dqkv) {
  const AttentionRefIndex at(s);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  dqkv->assign(QkvSize(s), 0.0);
  const size_t tt = static_cast<size_t>(s.seq * s.seq);
  std::vector<double> ds(tt);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.heads; ++h) {
      auto p = [&](int64_t i, int64_t j) { return probs[at.Probs(b, h, i, j)]; };
      for (int64_t i = 0; i < s.seq; ++i) {
        double rowdot = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          double dp = 0.0;
          for (int64_t c = 0; c < s.head_dim; ++c) {
            dp += dout[at.Out(b, i, h, c)] * qkv[at.Qkv(b, j, 2, h, c)];
          }
          ds[i * s.seq + j] = dp;
          rowdot += p(i, j) * dp;
        }
        for (int64_t j = 0; j <= i; ++j) ds[i * s.seq + j] = p(i, j) * (ds[i * s.seq + j] - rowdot);
      }
      for (int64_t i = 0; i < s.seq; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          const double g = ds[i * s.seq + j];
          for (int64_t c = 0; c < s.head_dim; ++c) {
            (*dqkv)[at.Qkv(b, i, 0, h, c)] += scale * g * qkv[at.Qkv(b, j, 1, h, c)];
            (*dqkv)[at.Qkv(b, j, 1, h, c)] += scale * g * qkv[at.Qkv(b, i, 0, h, c)];
            (*dqkv)[at.Qkv(b, j, 2, h, c)] += p(i, j) * dout[at.Out(b, i, h, c)];
          }
        }
      }
    }
  }
}

inline std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}
inline std::vector<float> ToFloat(const std::vector<double>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = static_cast<float>(v[i]);
  return f;
}

}  // namespace lockstep::kernels::cuda::testing
