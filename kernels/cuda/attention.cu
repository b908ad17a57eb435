// Causal attention with one block per (sample, head, row) and nothing shared
// between blocks but global memory, so no atomics and a fixed summation order:
//   forward      block per query i: scores over keys j <= i (thread per key), block
//                max, exp and a double block sum (fixed tree), the probs row (zeros
//                beyond i written too), then out_i = P_i V (thread per column).
//   backward 1   block per query i: dP_ij = dO_i . v_j, rowdot = sum_j P_ij dP_ij in
//                double, dS row to the workspace, dQ_i = dS_i K (thread per column).
//   backward 2   block per key j: dK_j = sum_{i>=j} dS_ij q_i and dV_j = sum_{i>=j}
//                P_ij dO_i, the column j of dS and P staged in shared memory.
// The row-wise arithmetic is kernels/cpu/attention.cc's (scale applied to the raw
// score, then max-subtracted exp; dS = scale * P * (dP - rowdot)); index math and
// per-element sums live in attention_index.h, where host tests exercise them.
#include <climits>
#include <cmath>

#include "common/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_index.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_check.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr int kRowThreads = kAttentionRowThreads;  // a power of two, as BlockSum requires
constexpr int kMaxKeyThreads = 256;

// Maximum of `value` over the block (exact in any order); every thread gets it.
// Ends synchronised, so scratch may be reused right after.
__device__ float BlockMax(float value, float* scratch) {
  const int t = threadIdx.x;
  scratch[t] = value;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (t < half) scratch[t] = fmaxf(scratch[t], scratch[t + half]);
    __syncthreads();
  }
  const float mx = scratch[0];
  __syncthreads();
  return mx;
}

// Dynamic shared memory: q_i (d) | scores -> exps -> probabilities (i + 1 of T).
__global__ void __launch_bounds__(kRowThreads)
    AttentionForwardKernel(AttentionDims s, float scale, const float* qkv, float* probs,
                           float* out) {
  extern __shared__ float smem[];
  __shared__ float max_scratch[kRowThreads];
  __shared__ double sum_scratch[kRowThreads];
  const int tid = threadIdx.x;
  const HeadRow r = HeadRowOfBlock(s, blockIdx.x);
  const int64_t d = s.head_dim, ld = QkvRowStride(s), i = r.row, n = KeysEnd(i);
  float* q = smem;
  float* p = smem + d;

  const float* q_src = qkv + QkvHeadOffset(s, r.b, i, kQkvQ, r.h);
  for (int64_t c = tid; c < d; c += blockDim.x) q[c] = q_src[c];
  __syncthreads();

  const float* k = qkv + QkvHeadOffset(s, r.b, 0, kQkvK, r.h);
  float local_max = -INFINITY;
  for (int64_t j = tid; j < n; j += blockDim.x) {
    const float score = RowDot(q, k + j * ld, d) * scale;
    p[j] = score;
    local_max = fmaxf(local_max, score);
  }
  const float mx = BlockMax(local_max, max_scratch);
  double part = 0.0;
  for (int64_t j = tid; j < n; j += blockDim.x) {  // each thread revisits its own keys
    const float e = expf(p[j] - mx);
    p[j] = e;
    part += e;
  }
  const float inv = static_cast<float>(1.0 / BlockSum(part, sum_scratch));
  float* p_out = probs + ProbsRowOffset(s, r.b, r.h, i);
  for (int64_t j = tid; j < s.seq; j += blockDim.x) {
    float w = 0.0f;  // above the diagonal: exactly zero
    if (j < n) {
      w = p[j] * inv;
      p[j] = w;
    }
    p_out[j] = w;
  }
  __syncthreads();

  const float* v = qkv + QkvHeadOffset(s, r.b, 0, kQkvV, r.h);
  float* o = out + OutHeadOffset(s, r.b, i, r.h);
  for (int64_t c = tid; c < d; c += blockDim.x) o[c] = WeightedColumnSum(p, v + c, ld, 0, n);
}

// Dynamic shared memory: dO_i (d) | dP -> dS (i + 1 of T). ds_rows: the workspace,
// probs' layout; only j <= i of row i is written (and later read).
__global__ void __launch_bounds__(kRowThreads)
    AttentionQueryGradKernel(AttentionDims s, float scale, const float* qkv, const float* probs,
                             const float* dout, float* ds_rows, float* dqkv) {
  extern __shared__ float smem[];
  __shared__ double sum_scratch[kRowThreads];
  const int tid = threadIdx.x;
  const HeadRow r = HeadRowOfBlock(s, blockIdx.x);
  const int64_t d = s.head_dim, ld = QkvRowStride(s), i = r.row, n = KeysEnd(i);
  float* go = smem;
  float* ds = smem + d;

  const float* go_src = dout + OutHeadOffset(s, r.b, i, r.h);
  for (int64_t c = tid; c < d; c += blockDim.x) go[c] = go_src[c];
  __syncthreads();

  const float* p = probs + ProbsRowOffset(s, r.b, r.h, i);
  const float* v = qkv + QkvHeadOffset(s, r.b, 0, kQkvV, r.h);
  double part = 0.0;
  for (int64_t j = tid; j < n; j += blockDim.x) {
    const float dp = RowDot(go, v + j * ld, d);
    ds[j] = dp;
    part += static_cast<double>(p[j]) * dp;
  }
  const float rowdot = static_cast<float>(BlockSum(part, sum_scratch));
  float* ds_out = ds_rows + ProbsRowOffset(s, r.b, r.h, i);
  for (int64_t j = tid; j < n; j += blockDim.x) {
    const float g = SoftmaxGrad(scale, p[j], ds[j], rowdot);
    ds[j] = g;
    ds_out[j] = g;
  }
  __syncthreads();

  const float* k = qkv + QkvHeadOffset(s, r.b, 0, kQkvK, r.h);
  float* dq = dqkv + QkvHeadOffset(s, r.b, i, kQkvQ, r.h);
  for (int64_t c = tid; c < d; c += blockDim.x) dq[c] = WeightedColumnSum(ds, k + c, ld, 0, n);
}

// Dynamic shared memory: column j of dS (T) | column j of P (T), rows [j, T) filled.
// Threads c < d own dK_j[c], threads d <= c < 2d own dV_j[c - d].
__global__ void AttentionKeyGradKernel(AttentionDims s, const float* qkv, const float* probs,
                                       const float* dout, const float* ds_rows, float* dqkv) {
  extern __shared__ float smem[];
  const int tid = threadIdx.x;
  const HeadRow r = HeadRowOfBlock(s, blockIdx.x);
  const int64_t t = s.seq, d = s.head_dim, j = r.row;
  float* ds_col = smem;
  float* p_col = smem + t;

  const int64_t col = ProbsRowOffset(s, r.b, r.h, 0) + j;  // element (0, j)
  for (int64_t i = j + tid; i < t; i += blockDim.x) {
    ds_col[i] = ds_rows[col + i * t];
    p_col[i] = probs[col + i * t];
  }
  __syncthreads();

  const float* q = qkv + QkvHeadOffset(s, r.b, 0, kQkvQ, r.h);
  const float* go = dout + OutHeadOffset(s, r.b, 0, r.h);
  float* dk = dqkv + QkvHeadOffset(s, r.b, j, kQkvK, r.h);
  float* dv = dqkv + QkvHeadOffset(s, r.b, j, kQkvV, r.h);
  for (int64_t c = tid; c < 2 * d; c += blockDim.x) {
    if (c < d) {
      dk[c] = WeightedColumnSum(ds_col, q + c, QkvRowStride(s), j, t);
    } else {
      dv[c - d] = WeightedColumnSum(p_col, go + (c - d), ModelDim(s), j, t);
    }
  }
}

// Threads for the key blocks: 2d columns rounded up to whole warps, capped.
int KeyThreads(int64_t head_dim) {
  const int64_t warps = (2 * head_dim + 31) / 32;
  return static_cast<int>(warps * 32 < kMaxKeyThreads ? warps * 32 : kMaxKeyThreads);
}

AttentionDims Resolve(const AttentionShape& s) { return {s.batch, s.seq, s.heads, s.head_dim}; }

float Scale(const AttentionShape& s) {
  return 1.0f / std::sqrt(static_cast<float>(s.head_dim));  // as the CPU computes it
}

// Blocks to launch (one per (sample, head, row)); 0 when there is nothing to do.
int64_t CheckShape(const char* what, const AttentionShape& s) {
  LS_CHECK(s.batch >= 0 && s.seq >= 0 && s.heads > 0 && s.head_dim > 0)
      << what << ": batch=" << s.batch << " seq=" << s.seq << " heads=" << s.heads
      << " head_dim=" << s.head_dim;
  LS_CHECK_LE(s.seq, kAttentionMaxSeq) << what << ": rows of T floats are staged in shared memory";
  LS_CHECK_LE(s.head_dim, kAttentionMaxHeadDim) << what << ": head_dim";
  const int64_t blocks = s.batch * s.heads * s.seq;
  LS_CHECK_LE(blocks, int64_t{INT_MAX}) << what << ": one block per (sample, head, row)";
  return blocks;
}

size_t FloatBytes(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

}  // namespace

size_t CausalAttentionWorkspaceBytes(const AttentionShape& s) {
  CheckShape("CausalAttentionWorkspaceBytes", s);
  return FloatBytes(s.batch * s.heads * s.seq * s.seq);
}

void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs, float* out,
                            cudaStream_t stream) {
  const int64_t blocks = CheckShape("CausalAttentionForward", s);
  if (blocks == 0) return;
  AttentionForwardKernel<<<static_cast<unsigned int>(blocks), kRowThreads,
                           FloatBytes(s.head_dim + s.seq), stream>>>(Resolve(s), Scale(s), qkv,
                                                                     probs, out);
  LS_CUDA_CHECK_LAUNCH();
}

void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                             const float* dout, float* dqkv, void* workspace, cudaStream_t stream) {
  const int64_t blocks = CheckShape("CausalAttentionBackward", s);
  if (blocks == 0) return;
  LS_CHECK(workspace != nullptr) << "CausalAttentionBackward: null workspace";
  float* ds_rows = static_cast<float*>(workspace);
  const AttentionDims d = Resolve(s);
  AttentionQueryGradKernel<<<static_cast<unsigned int>(blocks), kRowThreads,
                             FloatBytes(s.head_dim + s.seq), stream>>>(d, Scale(s), qkv, probs,
                                                                       dout, ds_rows, dqkv);
  LS_CUDA_CHECK_LAUNCH();
  AttentionKeyGradKernel<<<static_cast<unsigned int>(blocks), KeyThreads(s.head_dim),
                           FloatBytes(2 * s.seq), stream>>>(d, qkv, probs, dout, ds_rows, dqkv);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
