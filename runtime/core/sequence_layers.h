// Layers for sequence models (per-sample shapes; the batch is the leading dim
// the model adds): Embedding, learned positional embedding, LSTM and GRU with
// full backpropagation through time, LayerNorm, causal multi-head
// self-attention, a pre-LayerNorm transformer block that owns its residuals,
// and a per-time-step Dense. All compute goes through the Backend op table.
// Layers own only per-batch scratch (saved activations for backward).
// Not thread-safe: one training thread drives a model.
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/core/layer.h"

namespace lockstep {

// (T) float-encoded token ids in [0, vocab) -> (T, dim). Param "embeddings"
// (vocab, dim), uniform in +-0.05 as Keras' Embedding. No input gradient: dx,
// when asked for, is written as zeros (ids are not differentiable).
std::unique_ptr<Layer> MakeEmbedding(int64_t vocab, int64_t dim);

// (T, dim) -> (T, dim): adds a learned row per position, T <= max_len. Param
// "embeddings" (max_len, dim), Glorot uniform (as keras_nlp PositionEmbedding);
// rows >= T get zero gradient.
std::unique_ptr<Layer> MakePositionalEmbedding(int64_t max_len, int64_t dim);

// (T, F) -> (units), the last hidden state, or (T, units) with return_sequences.
// Keras conventions: gates [i, f, c, o]; params "kernel" (F, 4 units) Glorot,
// "recurrent_kernel" (units, 4 units) Glorot (Keras uses orthogonal), "bias"
// (4 units) zeros. The forget gate adds a constant 1 to its pre-activation
// (Keras unit_forget_bias=True, expressed as an offset because ParamInit has no
// "ones"): a stored forget bias b means an effective bias b + 1. Zero initial
// state; tanh / sigmoid activations.
std::unique_ptr<Layer> MakeLstm(int64_t units, bool return_sequences);

// Like MakeLstm, Keras GRU with reset_after=True: gates [z, r, h]; params
// "kernel" (F, 3 units), "recurrent_kernel" (units, 3 units), "bias" (2, 3 units)
// = [input bias; recurrent bias], zeros. h = z * h_prev + (1 - z) * hh.
std::unique_ptr<Layer> MakeGru(int64_t units, bool return_sequences);

// Normalises over the last dimension of any per-sample shape. Params "gamma" and
// "beta" (last dim), both zeros: gamma is stored zero-centred, y = xhat * (1 +
// gamma) + beta, so the initial scale is 1. eps inside the square root.
std::unique_ptr<Layer> MakeLayerNorm(float eps = 1e-5f);

// (T, dim) -> (T, dim); heads must divide dim. Fused projection: params
// "qkv_kernel" (dim, 3 dim) = [Wq | Wk | Wv], "qkv_bias" (3 dim), then
// softmax(Q K^T / sqrt(dim / heads)) V per head with position t attending to
// positions <= t, heads concatenated, "out_kernel" (dim, dim), "out_bias" (dim).
// Kernels are Glorot uniform with the fans of separate (dim, dim) projections.
std::unique_ptr<Layer> MakeCausalSelfAttention(int64_t heads, int64_t dim);

// (T, dim) -> (T, dim), pre-LayerNorm (GPT-2 style):
//   h = x + Attention(LN1(x));  y = h + Dense2(GELU(Dense1(LN2(h))))
// Dense1 dim -> mlp_hidden, Dense2 mlp_hidden -> dim, both with bias, applied per
// time step; GELU is the tanh approximation. Params are those of the parts,
// prefixed: ln1.gamma, ln1.beta, attn.qkv_kernel, ..., ln2.*, mlp1.kernel,
// mlp1.bias, mlp2.kernel, mlp2.bias. LayerNorm eps 1e-5.
std::unique_ptr<Layer> MakeTransformerBlock(int64_t heads, int64_t dim, int64_t mlp_hidden);

// (..., in) -> (..., units): a Dense applied to every position of the leading
// per-sample dims (e.g. (T, dim) -> (T, vocab) logits of a language model), as
// one GEMM over batch * T rows. Params "kernel" (in, units), "bias" (units), as
// MakeDense (whose own input must be flat). `activation` is fused as in MakeDense.
std::unique_ptr<Layer> MakeTimeDistributedDense(int64_t units, bool use_bias = true,
                                                Activation activation = Activation::kIdentity);

}  // namespace lockstep
