// Dense matrix multiply on the CPU through OpenBLAS cblas_sgemm (row-major).
// Raw pointers only; callers own all memory. Thread-safe (OpenBLAS threads are
// a process-wide setting, see SetBlasThreads).
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// C(m x n) = alpha * op(A) * op(B) + beta * C, all row-major.
// op(A) is (m x k): A is (m x k) with lda >= k, or (k x m) with lda >= m when trans_a.
// op(B) is (k x n): B is (k x n) with ldb >= n, or (n x k) with ldb >= k when trans_b.
void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// Number of threads OpenBLAS uses for every later call in this process.
void SetBlasThreads(int threads);
int BlasThreads();

}  // namespace lockstep::kernels::cpu
