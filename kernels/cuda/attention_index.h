// Index math and per-element sums of the CUDA causal attention kernels
// (kernels/cuda/attention.cu) as __host__ __device__ functions, so host tests can
// run them over every index of small shapes. Layouts are kernels/cpu/attention.h's:
//   qkv, dqkv (batch, T, 3 * dim): row (b, t) = [Q | K | V], head h in columns
//             h*d .. h*d+d-1 of each part;
//   probs     (batch, H, T, T), row i nonzero only in columns j <= i; the backward's
//             dS scratch has the same layout;
//   out, dout (batch, T, dim), heads side by side.
// Every kernel gives one block to one (sample, head, row) with
// block = (b * H + h) * T + row; the row is a query i (forward; backward dS and dQ)
// or a key j (backward dK and dV). Header-only, no CUDA runtime; pure, thread-safe.
#pragma once

#include <cstdint>

#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

// AttentionShape resolved into plain fields (its dim() is host-only) for kernel arguments.
struct AttentionDims {
  int64_t batch, seq, heads, head_dim;
};

// Threads of the per-query blocks: fixed (not tuned per device) because the order of
// their double block sums (BlockSum's tree over per-thread partials) depends on it.
constexpr int kAttentionRowThreads = 128;

// Which third of a qkv row.
constexpr int kQkvQ = 0, kQkvK = 1, kQkvV = 2;

struct HeadRow {
  int64_t b, h, row;
};

LS_HOST_DEVICE int64_t ModelDim(const AttentionDims& s) { return s.heads * s.head_dim; }

// Distance between consecutive positions t and t + 1 of one head's part in qkv.
LS_HOST_DEVICE int64_t QkvRowStride(const AttentionDims& s) { return 3 * ModelDim(s); }

// Inverse of block = (b * H + h) * T + row.
LS_HOST_DEVICE HeadRow HeadRowOfBlock(const AttentionDims& s, int64_t block) {
  HeadRow r;
  r.row = block % s.seq;
  const int64_t bh = block / s.seq;
  r.h = bh % s.heads;
  r.b = bh / s.heads;
  return r;
}

// Element 0 of head h's `part` (kQkvQ/K/V) of position t of sample b in qkv.
LS_HOST_DEVICE int64_t QkvHeadOffset(const AttentionDims& s, int64_t b, int64_t t, int part,
                                     int64_t h) {
  return (b * s.seq + t) * QkvRowStride(s) + part * ModelDim(s) + h * s.head_dim;
}

// Element 0 of head h of position t of sample b in out / dout.
LS_HOST_DEVICE int64_t OutHeadOffset(const AttentionDims& s, int64_t b, int64_t t, int64_t h) {
  return (b * s.seq + t) * ModelDim(s) + h * s.head_dim;
}

// Element (i, 0) of head h of sample b in probs (or the dS scratch).
LS_HOST_DEVICE int64_t ProbsRowOffset(const AttentionDims& s, int64_t b, int64_t h, int64_t i) {
  return ((b * s.heads + h) * s.seq + i) * s.seq;
}

// Query i attends to keys [0, i]; key j is attended by queries [j, T).
LS_HOST_DEVICE int64_t KeysEnd(int64_t i) { return i + 1; }

// a . b over n contiguous floats, ascending: one raw score q_i . k_j or one dP_ij = dO_i . v_j.
LS_HOST_DEVICE float RowDot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
}

// Sum over r in [lo, hi) of w[r] * x[r * ld], ascending r: one element of P V, dS K,
// dS^T Q or P^T dO, gathered by the one thread that owns it (fixed order, repeatable).
LS_HOST_DEVICE float WeightedColumnSum(const float* w, const float* x, int64_t ld, int64_t lo,
                                       int64_t hi) {
  float acc = 0.0f;
  for (int64_t r = lo; r < hi; ++r) acc += w[r] * x[r * ld];
  return acc;
}

// dS_ij = scale * P_ij * (dP_ij - sum_k P_ik dP_ik), evaluated as kernels/cpu does.
LS_HOST_DEVICE float SoftmaxGrad(float scale, float p, float dp, float rowdot) {
  return scale * p * (dp - rowdot);
}

}  // namespace lockstep::kernels::cuda
