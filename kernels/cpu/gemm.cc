// Sgemm through OpenBLAS cblas_sgemm (row-major). Degenerate sizes are handled
// here so BLAS never sees m, n or k == 0 (some builds reject lda < 1 then).
#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <cstdint>
#include <limits>

#include "common/check.h"

namespace lockstep::kernels::cpu {
namespace {

blasint ToBlasInt(int64_t v, const char* what) {
  LS_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max())
      << "Sgemm: " << what << "=" << v << " does not fit OpenBLAS's 32-bit blasint";
  return static_cast<blasint>(v);
}

}  // namespace

void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  LS_CHECK(m >= 0 && n >= 0 && k >= 0) << "Sgemm: negative size m=" << m << " n=" << n
                                       << " k=" << k;
  if (m == 0 || n == 0) return;
  LS_CHECK_GE(ldc, n) << "Sgemm: ldc too small";
  if (k == 0) {
    // op(A) * op(B) is the zero matrix: C = beta * C (beta == 0 overwrites, like BLAS,
    // so stale NaNs in C do not survive).
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      if (beta == 0.0f) {
        for (int64_t j = 0; j < n; ++j) row[j] = 0.0f;
      } else {
        for (int64_t j = 0; j < n; ++j) row[j] *= beta;
      }
    }
    return;
  }
  LS_CHECK_GE(lda, trans_a ? m : k) << "Sgemm: lda too small";
  LS_CHECK_GE(ldb, trans_b ? k : n) << "Sgemm: ldb too small";
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, ToBlasInt(m, "m"), ToBlasInt(n, "n"),
              ToBlasInt(k, "k"), alpha, a, ToBlasInt(lda, "lda"), b, ToBlasInt(ldb, "ldb"), beta,
              c, ToBlasInt(ldc, "ldc"));
}

void SetBlasThreads(int threads) {
  LS_CHECK_GE(threads, 1) << "SetBlasThreads";
  openblas_set_num_threads(threads);
}

int BlasThreads() { return openblas_get_num_threads(); }

}  // namespace lockstep::kernels::cpu
