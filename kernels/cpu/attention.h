// Multi-head causal self-attention core on the CPU: softmax(Q K^T / sqrt(d)) V
// with position i attending to positions j <= i, from a fused (Q | K | V)
// projection. The projections themselves are GEMMs done by the caller. Per
// (sample, head) the products are small GEMMs on strided views that skip the
// masked half. Raw pointers; thread-safe for disjoint outputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cpu {

struct AttentionShape {
  int64_t batch = 0;
  int64_t seq = 0;       // T
  int64_t heads = 0;     // H
  int64_t head_dim = 0;  // d; the model width is H * d
  int64_t dim() const { return heads * head_dim; }
};

// qkv (batch, T, 3 * dim): per row [Q | K | V], head h in columns h*d .. h*d+d-1
// of each part. probs (batch, H, T, T): the attention weights (0 above the
// diagonal), saved for backward. out (batch, T, dim), heads side by side.
void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs, float* out);

// Floats of workspace CausalAttentionBackward needs: 2 * T * T.
size_t CausalAttentionWorkspaceFloats(const AttentionShape& s);

// dqkv (batch, T, 3 * dim) from dout (batch, T, dim); workspace holds
// CausalAttentionWorkspaceFloats(s) floats.
void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                             const float* dout, float* dqkv, float* workspace);

}  // namespace lockstep::kernels::cpu
