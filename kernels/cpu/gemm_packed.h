// GEMM with a pre-packed right-hand operand, for small-m products that reuse one
// B many times: the recurrent step h_{t-1} U of an LSTM/GRU (m = batch, one call
// per time step). OpenBLAS re-packs B on every call, which for m <= 32 costs a
// third of the product; here B is packed once per layer pass. Raw pointers, no
// allocation; thread-safe for disjoint outputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cpu {

// Floats PackGemmB writes for op(B) of shape (k x n): panels of 16 columns, zero-padded.
size_t PackedGemmBFloats(int64_t n, int64_t k);

// packed <- op(B) (k x n): B is (k x n) with ldb >= n, or (n x k) with ldb >= k when trans_b.
void PackGemmB(bool trans_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* packed);

// Triangular structure the product may exploit (square causal-attention blocks):
//   kLowerA: A(i, p) == 0 for p > i; the sums skip those terms (exact for finite B).
//   kUpperA: A(i, p) == 0 for p < i; likewise.
//   kLowerC: only C(i, j) with j <= i is wanted; 16-column panels entirely right of
//            a 4-row block are not computed (those C entries are left as they were).
enum class Triangle { kNone, kLowerA, kUpperA, kLowerC };

// C (m x n) = A (m x k, lda) * op(B) + beta * C, op(B) given packed. Each C element
// is one k-ordered sum, so rows do not depend on m or on their position (the result
// of a row is the same whatever batch it is computed in).
void SgemmPackedB(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* packed,
                  float beta, float* c, int64_t ldc, Triangle tri = Triangle::kNone);

}  // namespace lockstep::kernels::cpu
