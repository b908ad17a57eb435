// Embedding lookup on the CPU: rows of a (vocab, dim) table gathered by token
// ids that arrive as floats (the model's input tensor is float), and the
// scatter-add that produces the table gradient. Raw pointers, no allocation;
// thread-safe for disjoint outputs. Deterministic (fixed accumulation order).
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// Token id of a float-encoded id: rounded to the nearest integer, so a value
// nudged by a finite-difference step still names the same row. Aborts
// (LS_CHECK) when the id lies outside [0, vocab): the dataset guarantees it.
int64_t TokenId(float id, int64_t vocab);

// y (n, dim) = table[ids[i]] for each of the n ids; table (vocab, dim).
void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab, int64_t dim,
                      float* y);
// dtable = beta * dtable + scatter_add(ids, dy); dy (n, dim). beta is 0 or 1.
void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab, int64_t dim,
                       float beta, float* dtable);

}  // namespace lockstep::kernels::cpu
