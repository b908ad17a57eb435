// SgemmPackedB against a naive double-precision triple loop: both B layouts,
// ragged m and n (tails of the 4-row tiles and 16-column panels), strided A and C,
// beta 0 and 1, k == 0; and rows that do not depend on the batch they are in.
#include "kernels/cpu/gemm_packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::TestRng;

void CheckPacked(bool tb, int64_t m, int64_t n, int64_t k, float beta, int64_t pad) {
  SCOPED_TRACE(::testing::Message() << "tb=" << tb << " m=" << m << " n=" << n << " k=" << k << " beta=" << beta);
  TestRng rng(77 + m + n + k);
  const int64_t lda = k + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
  std::vector<float> a = rng.Vector(m * lda), b = rng.Vector((tb ? n : k) * ldb), c = rng.Vector(m * ldc);
  std::vector<float> c0 = c;
  std::vector<float> packed(PackedGemmBFloats(n, k) + 1, NAN);
  PackGemmB(tb, n, k, b.data(), ldb, packed.data());
  SgemmPackedB(m, n, k, a.data(), lda, packed.data(), beta, c.data(), ldc);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= n) {
        EXPECT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "padding touched at " << i << "," << j;
        continue;
      }
      double acc = 0.0, mag = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
        acc += t;
        mag += std::abs(t);
      }
      const double want = acc + beta * c0[i * ldc + j];
      EXPECT_NEAR(c[i * ldc + j], want, 1e-6 * (mag + std::abs(want) + 1.0)) << i << "," << j;
    }
  }
  EXPECT_TRUE(std::isnan(packed.back())) << "PackGemmB wrote past PackedGemmBFloats";
}

TEST(CpuSgemmPackedBTest, MatchesNaiveForBothLayoutsAndRaggedShapes) {
  for (bool tb : {false, true}) {
    for (int64_t m : {1, 3, 4, 7, 16, 33}) {
      for (int64_t n : {1, 15, 16, 17, 40}) {
        for (int64_t k : {1, 5, 64}) CheckPacked(tb, m, n, k, 0.0f, 0);
      }
    }
  }
}

TEST(CpuSgemmPackedBTest, StridesAndBetaOne) {
  CheckPacked(false, 9, 50, 37, 1.0f, 3);
  CheckPacked(true, 9, 50, 37, 1.0f, 5);
  CheckPacked(false, 32, 1024, 256, 1.0f, 0);
  CheckPacked(true, 16, 256, 1024, 0.0f, 0);
}

TEST(CpuSgemmPackedBTest, ZeroKScalesC) {
  std::vector<float> c = {1, 2, 3, 4}, packed(1);
  const float a[1] = {0};
  SgemmPackedB(2, 2, 0, a, 1, packed.data(), 1.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{1, 2, 3, 4}));
  SgemmPackedB(2, 2, 0, a, 1, packed.data(), 0.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{0, 0, 0, 0}));
}

TEST(CpuSgemmPackedBTest, RowResultDoesNotDependOnBatch) {
  TestRng rng(5);
  const int64_t m = 13, n = 33, k = 70;
  std::vector<float> a = rng.Vector(m * k), b = rng.Vector(k * n), packed(PackedGemmBFloats(n, k));
  PackGemmB(false, n, k, b.data(), n, packed.data());
  std::vector<float> all(m * n), one(n);
  SgemmPackedB(m, n, k, a.data(), k, packed.data(), 0.0f, all.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    SgemmPackedB(1, n, k, a.data() + i * k, k, packed.data(), 0.0f, one.data(), n);
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(one[j], all[i * n + j]) << i << "," << j;
  }
}

// Square causal blocks: with A triangular the skipped terms are zeros, so the result
// equals the full product exactly; kLowerC computes at least every entry on and
// below the diagonal.
TEST(CpuSgemmPackedBTest, TriangleModesMatchFullProduct) {
  TestRng rng(9);
  for (int64_t t : {5, 16, 37, 64}) {
    const int64_t d = 7;
    std::vector<float> lower = rng.Vector(t * t), upper = rng.Vector(t * t), b = rng.Vector(t * d);
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j < t; ++j) (j > i ? lower : upper)[i * t + j] = 0.0f;
    }
    std::vector<float> packed(PackedGemmBFloats(d, t));
    PackGemmB(false, d, t, b.data(), d, packed.data());
    for (auto [a, tri] : {std::pair{&lower, Triangle::kLowerA}, std::pair{&upper, Triangle::kUpperA}}) {
      std::vector<float> full(t * d), part(t * d, NAN);
      SgemmPackedB(t, d, t, a->data(), t, packed.data(), 0.0f, full.data(), d);
      SgemmPackedB(t, d, t, a->data(), t, packed.data(), 0.0f, part.data(), d, tri);
      EXPECT_EQ(full, part) << "t=" << t << " tri=" << static_cast<int>(tri);
    }
    std::vector<float> q = rng.Vector(t * d), kp(PackedGemmBFloats(t, d));
    PackGemmB(true, t, d, q.data(), d, kp.data());  // S = Q Q^T
    std::vector<float> full(t * t), part(t * t, NAN);
    SgemmPackedB(t, t, d, q.data(), d, kp.data(), 0.0f, full.data(), t);
    SgemmPackedB(t, t, d, q.data(), d, kp.data(), 0.0f, part.data(), t, Triangle::kLowerC);
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j <= i; ++j) EXPECT_EQ(part[i * t + j], full[i * t + j]) << i << "," << j;
    }
  }
}

}  // namespace
}  // namespace lockstep::kernels::cpu
