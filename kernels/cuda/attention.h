// Multi-head causal self-attention core on the GPU, mirroring kernels/cpu/attention.h
// (same shape struct, layouts and scale 1/sqrt(d)): softmax(Q K^T / sqrt(d)) V with
// position i attending to j <= i, from a fused (Q | K | V) projection. Plain CUDA
// cores, no tensor cores, no atomics: every output element is summed by one thread
// in a fixed order, so results are bitwise repeatable. Not bitwise the CPU's (that
// uses blocked GEMMs and its own exp). Pointers are device memory. Thread-safe;
// ordering is the stream's.
// Limits (LS_CHECKed): seq <= kAttentionMaxSeq, head_dim <= kAttentionMaxHeadDim,
// batch * heads * seq < 2^31.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/attention.h"

namespace lockstep::kernels::cuda {

using AttentionShape = ::lockstep::kernels::cpu::AttentionShape;

// Rows of T floats staged in shared memory bound T; the kernels are meant for
// T <= 256 and d <= 128 (one block per row, one thread per key or output column).
constexpr int64_t kAttentionMaxSeq = 4096;
constexpr int64_t kAttentionMaxHeadDim = 1024;

// qkv (batch, T, 3 * dim): per row [Q | K | V], head h in columns h*d .. h*d+d-1 of
// each part. probs (batch, H, T, T): the attention weights, exactly 0 above the
// diagonal (written), saved for backward. out (batch, T, dim), heads side by side.
void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs, float* out,
                            cudaStream_t stream);

// Bytes of device workspace CausalAttentionBackward needs: dS, batch * H * T * T floats.
size_t CausalAttentionWorkspaceBytes(const AttentionShape& s);

// dqkv (batch, T, 3 * dim; overwritten, every element) from dout (batch, T, dim), qkv
// and the forward's probs: dV = P^T dO, dS = P .* (dP - rowsum(P .* dP)) / sqrt(d) with
// dP = dO V^T, dQ = dS K, dK = dS^T Q. workspace holds CausalAttentionWorkspaceBytes(s).
void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                             const float* dout, float* dqkv, void* workspace, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
