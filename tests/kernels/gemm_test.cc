// Sgemm against a naive double-precision triple loop.
#include "kernels/cpu/gemm.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::MaxRelError;
using testing::TestRng;

struct GemmCase {
  bool ta, tb;
};

void CheckGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
               int64_t pad) {
  TestRng rng(1234 + ta * 2 + tb);
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
  std::vector<float> a = rng.Vector(a_rows * lda), b = rng.Vector(b_rows * ldb),
                     c = rng.Vector(m * ldc);
  std::vector<double> ref(c.begin(), c.end());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      ref[i * ldc + j] = alpha * acc + beta * c[i * ldc + j];
    }
  }
  Sgemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  EXPECT_LT(MaxRelError(c, ref), 1e-5) << "ta=" << ta << " tb=" << tb;
}

TEST(CpuSgemmTest, AllTransposeCombinationsMatchNaive) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) CheckGemm(ta, tb, 37, 23, 51, 1.0f, 0.0f, 0);
  }
}

TEST(CpuSgemmTest, LeadingDimensionsLargerThanMinimal) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) CheckGemm(ta, tb, 19, 45, 8, 1.0f, 0.0f, 5);
  }
}

TEST(CpuSgemmTest, AlphaAndBeta) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) CheckGemm(ta, tb, 13, 7, 29, -0.5f, 1.5f, 3);
  }
}

TEST(CpuSgemmTest, ZeroKScalesOrClearsC) {
  std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f};
  Sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 2.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{2.0f, 4.0f, 6.0f, 8.0f}));
  c[0] = NAN;
  Sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f}));
}

TEST(CpuSgemmTest, ZeroMOrNLeavesCUntouched) {
  std::vector<float> c = {7.0f};
  Sgemm(false, false, 0, 1, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f, c.data(), 1);
  Sgemm(false, false, 1, 0, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f, c.data(), 1);
  EXPECT_EQ(c[0], 7.0f);
}

TEST(CpuSgemmTest, SetBlasThreadsIsObserved) {
  const int before = BlasThreads();
  SetBlasThreads(1);
  EXPECT_EQ(BlasThreads(), 1);
  SetBlasThreads(before);
  EXPECT_EQ(BlasThreads(), before);
}

}  // namespace
}  // namespace lockstep::kernels::cpu
