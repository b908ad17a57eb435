// Causal attention: per (sample, head) S = Q K^T, masked row softmax, O = P V;
// backward through the same products and the softmax Jacobian. The products use
// the packed-B GEMM (gemm_packed.h) with the operand packed on the stack and the
// causal structure exploited (half the multiply-adds); heads whose packed
// operands would not fit the stack buffer go through OpenBLAS instead.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_packed.h"

namespace lockstep::kernels::cpu {
namespace {

// Floats of one packed (T x d) or (d x T) operand on the stack (64 KiB).
constexpr size_t kStackPackFloats = 16384;

bool PacksFit(const AttentionShape& s) {
  return std::max(PackedGemmBFloats(s.seq, s.head_dim), PackedGemmBFloats(s.head_dim, s.seq)) <= kStackPackFloats;
}

LS_INLINE double Combine8(const double* p) {
  return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

// In place over a (T, T) block of raw scores: row i becomes softmax(scale * s[i, 0..i]),
// zeros beyond the diagonal. Entries right of the diagonal are never read.
LS_KERNEL_CLONES void CausalSoftmaxRows(float* p, int64_t t, float scale) {
  for (int64_t i = 0; i < t; ++i) {
    float* row = p + i * t;
    const int64_t n = i + 1;
    float mxp[8];
    for (int l = 0; l < 8; ++l) mxp[l] = -std::numeric_limits<float>::infinity();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      for (int l = 0; l < 8; ++l) mxp[l] = std::max(mxp[l], row[j + l] * scale);
    }
    for (int l = 0; j < n; ++j, ++l) mxp[l] = std::max(mxp[l], row[j] * scale);
    float mx = mxp[0];
    for (int l = 1; l < 8; ++l) mx = std::max(mx, mxp[l]);
    double sp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    j = 0;
    for (; j + 8 <= n; j += 8) {
      for (int l = 0; l < 8; ++l) {
        const float e = FastExp(row[j + l] * scale - mx);
        row[j + l] = e;
        sp[l] += e;
      }
    }
    for (int l = 0; j < n; ++j, ++l) {
      const float e = FastExp(row[j] * scale - mx);
      row[j] = e;
      sp[l] += e;
    }
    const float inv = static_cast<float>(1.0 / Combine8(sp));
    for (j = 0; j < n; ++j) row[j] *= inv;
    for (j = n; j < t; ++j) row[j] = 0.0f;
  }
}

// dS = scale * P .* (dP - rowsum(P .* dP)) in place over dp; zero above the diagonal.
LS_KERNEL_CLONES void SoftmaxBackwardRows(const float* p, float* dp, int64_t t, float scale) {
  for (int64_t i = 0; i < t; ++i) {
    const float* pr = p + i * t;
    float* dr = dp + i * t;
    const int64_t n = i + 1;
    double dotp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      for (int l = 0; l < 8; ++l) dotp[l] += static_cast<double>(pr[j + l]) * dr[j + l];
    }
    for (int l = 0; j < n; ++j, ++l) dotp[l] += static_cast<double>(pr[j]) * dr[j];
    const float fdot = static_cast<float>(Combine8(dotp));
    for (j = 0; j < n; ++j) dr[j] = scale * pr[j] * (dr[j] - fdot);
    for (j = n; j < t; ++j) dr[j] = 0.0f;
  }
}

// dst (cols x rows) = src (rows x cols)^T, both contiguous.
void Transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
}

}  // namespace

size_t CausalAttentionWorkspaceFloats(const AttentionShape& s) {
  return 2 * static_cast<size_t>(s.seq * s.seq);
}

void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs, float* out) {
  const int64_t t = s.seq, d = s.head_dim, dim = s.dim(), ld = 3 * dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool packed = PacksFit(s);
  alignas(64) float pack[kStackPackFloats];
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* base = qkv + b * t * ld;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* q = base + h * d;
      const float* k = base + dim + h * d;
      const float* v = base + 2 * dim + h * d;
      float* p = probs + (b * s.heads + h) * t * t;
      float* o = out + b * t * dim + h * d;
      if (!packed) {
        Sgemm(false, true, t, t, d, 1.0f, q, ld, k, ld, 0.0f, p, t);  // S = Q K^T
        CausalSoftmaxRows(p, t, scale);
        Sgemm(false, false, t, d, t, 1.0f, p, t, v, ld, 0.0f, o, dim);  // O = P V
        continue;
      }
      PackGemmB(true, t, d, k, ld, pack);  // K^T
      SgemmPackedB(t, t, d, q, ld, pack, 0.0f, p, t, Triangle::kLowerC);
      CausalSoftmaxRows(p, t, scale);
      PackGemmB(false, d, t, v, ld, pack);  // V
      SgemmPackedB(t, d, t, p, t, pack, 0.0f, o, dim, Triangle::kLowerA);
    }
  }
}

void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                             const float* dout, float* dqkv, float* workspace) {
  const int64_t t = s.seq, d = s.head_dim, dim = s.dim(), ld = 3 * dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  float* dp = workspace;           // (T, T)
  float* tr = workspace + t * t;   // (T, T): P^T, then dS^T
  const bool packed = PacksFit(s);
  alignas(64) float pack[kStackPackFloats];
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* base = qkv + b * t * ld;
    float* dbase = dqkv + b * t * ld;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* q = base + h * d;
      const float* k = base + dim + h * d;
      const float* v = base + 2 * dim + h * d;
      const float* p = probs + (b * s.heads + h) * t * t;
      const float* dout_h = dout + b * t * dim + h * d;
      float* dq = dbase + h * d;
      float* dk = dbase + dim + h * d;
      float* dv = dbase + 2 * dim + h * d;
      if (!packed) {
        Sgemm(false, true, t, t, d, 1.0f, dout_h, dim, v, ld, 0.0f, dp, t);  // dP = dO V^T
        Sgemm(true, false, t, d, t, 1.0f, p, t, dout_h, dim, 0.0f, dv, ld);   // dV = P^T dO
        SoftmaxBackwardRows(p, dp, t, scale);
        Sgemm(false, false, t, d, t, 1.0f, dp, t, k, ld, 0.0f, dq, ld);  // dQ = dS K
        Sgemm(true, false, t, d, t, 1.0f, dp, t, q, ld, 0.0f, dk, ld);   // dK = dS^T Q
        continue;
      }
      PackGemmB(true, t, d, v, ld, pack);  // V^T; dS needs dP only on and below the diagonal
      SgemmPackedB(t, t, d, dout_h, dim, pack, 0.0f, dp, t, Triangle::kLowerC);
      Transpose(p, t, t, tr);  // P^T is upper triangular
      PackGemmB(false, d, t, dout_h, dim, pack);
      SgemmPackedB(t, d, t, tr, t, pack, 0.0f, dv, ld, Triangle::kUpperA);
      SoftmaxBackwardRows(p, dp, t, scale);
      PackGemmB(false, d, t, k, ld, pack);
      SgemmPackedB(t, d, t, dp, t, pack, 0.0f, dq, ld, Triangle::kLowerA);
      Transpose(dp, t, t, tr);  // dS^T
      PackGemmB(false, d, t, q, ld, pack);
      SgemmPackedB(t, d, t, tr, t, pack, 0.0f, dk, ld, Triangle::kUpperA);
    }
  }
}

}  // namespace lockstep::kernels::cpu
