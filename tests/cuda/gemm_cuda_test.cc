// cuBLASLt GEMM against the row-major semantics of cpu::Sgemm (kernels/cpu/gemm.h),
// evaluated in double here (so this suite needs no BLAS), plus the bias / ReLU
// epilogues: all four transpose combinations, padded leading dimensions,
// misaligned operands, m/n/k of 1 and odd sizes, beta != 0, k == 0, TF32.
// Tolerance: each element may differ by 4 k eps times sum_l |a_il b_lj| (the
// rounding bound of a k-term dot product); an indexing bug is off by O(1).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::DeviceBuffer;

struct Problem {
  int64_t m, n, k;
  int64_t pad = 0;     // extra leading-dimension elements on A, B and C
  int64_t offset = 0;  // operands start this many floats into their buffers (misalignment)
};

class CudaGemmTest : public testing::CudaLtTest {
 protected:
  // Runs one case on both backends and compares.
  void Check(const Problem& p, bool ta, bool tb, float alpha, float beta, GemmEpilogue ep,
             bool tf32 = false) {
    SCOPED_TRACE(::testing::Message()
                 << "m=" << p.m << " n=" << p.n << " k=" << p.k << " pad=" << p.pad
                 << " offset=" << p.offset << " ta=" << ta << " tb=" << tb << " alpha=" << alpha
                 << " beta=" << beta << " epilogue=" << static_cast<int>(ep) << " tf32=" << tf32);
    const int64_t a_rows = ta ? p.k : p.m, a_cols = ta ? p.m : p.k;
    const int64_t b_rows = tb ? p.n : p.k, b_cols = tb ? p.k : p.n;
    const int64_t lda = a_cols + p.pad, ldb = b_cols + p.pad, ldc = p.n + p.pad;
    const int64_t off = p.offset;
    std::vector<float> a = rng_.Vector(off + a_rows * lda), b = rng_.Vector(off + b_rows * ldb);
    std::vector<float> c = rng_.Vector(off + p.m * ldc);
    // The bias shares the offset: at 4-byte alignment it cannot go into cuBLASLt's
    // epilogue (see gemm.cc), so both paths are covered.
    const std::vector<float> bias = rng_.Vector(off + p.n);
    const bool has_bias = ep == GemmEpilogue::kBias || ep == GemmEpilogue::kBiasRelu;
    const bool relu = ep == GemmEpilogue::kRelu || ep == GemmEpilogue::kBiasRelu;
    if (beta == 0.0f) {  // beta == 0 must overwrite: plant NaNs in C on both sides
      for (auto& v : c) v = std::numeric_limits<float>::quiet_NaN();
    }
    DeviceBuffer<float> d_a(a), d_b(b), d_c(c), d_bias(bias);

    // Reference: the row-major definition of cpu::Sgemm (kernels/cpu/gemm.h) in double,
    // then the epilogue; bound = |alpha| sum_l |op(A)_il op(B)_lj| for the tolerance.
    std::vector<double> want(p.m * p.n), bound(p.m * p.n);
    for (int64_t r = 0; r < p.m; ++r) {
      for (int64_t j = 0; j < p.n; ++j) {
        double acc = 0.0, mag = 0.0;
        for (int64_t l = 0; l < p.k; ++l) {
          const double av = ta ? a[off + l * lda + r] : a[off + r * lda + l];
          const double bv = tb ? b[off + j * ldb + l] : b[off + l * ldb + j];
          acc += av * bv;
          mag += std::fabs(av * bv);
        }
        double v =
            alpha * acc + (beta == 0.0f ? 0.0 : beta * static_cast<double>(c[off + r * ldc + j]));
        if (has_bias) v += bias[off + j];
        if (relu) v = v > 0.0 ? v : 0.0;
        want[r * p.n + j] = v;
        bound[r * p.n + j] = std::fabs(alpha) * mag;
      }
    }

    GemmOptions opt;
    opt.epilogue = ep;
    opt.bias = has_bias ? d_bias.get() + off : nullptr;
    opt.allow_tf32 = tf32;
    Sgemm(lt_->handle(), ta, tb, p.m, p.n, p.k, alpha, d_a.get() + off, lda, d_b.get() + off, ldb,
          beta, d_c.get() + off, ldc, opt, lt_->workspace(), stream_);
    const std::vector<float> got = d_c.Download();

    const double eps = tf32 ? 1.0 / 1024 : std::numeric_limits<float>::epsilon();
    int64_t bad = 0;
    for (int64_t r = 0; r < p.m; ++r) {
      for (int64_t j = 0; j < p.n; ++j) {
        const size_t i = off + r * ldc + j;
        const double tol = 4.0 * (p.k + 2) * eps * (bound[r * p.n + j] + 1.0);
        const double w = want[r * p.n + j];
        if (!(std::fabs(static_cast<double>(got[i]) - w) <= tol) && bad++ < 5) {
          ADD_FAILURE() << "C[" << r << "," << j << "] got " << got[i] << " want " << w << " (tol "
                        << tol << ")";
        }
      }
      // Padding columns of C are not touched.
      for (int64_t j = p.n; j < ldc; ++j) {
        const size_t i = off + r * ldc + j;
        if (!(std::isnan(c[i]) && std::isnan(got[i])) && got[i] != c[i] && bad++ < 5) {
          ADD_FAILURE() << "padding C[" << r << "," << j << "] was written";
        }
      }
    }
    EXPECT_EQ(bad, 0);
  }

  TestRng rng_{81};
};

const Problem kProblems[] = {
    {1, 1, 1},       {1, 17, 5},         {33, 1, 7},         {63, 65, 127},
    {128, 256, 64},  {257, 129, 300},    {10, 784, 128},     {64, 10, 512},
    {31, 33, 35, 3}, {16, 16, 16, 0, 1}, {45, 37, 29, 5, 3},
};

TEST_F(CudaGemmTest, AllTransposesMatchCpu) {
  for (const Problem& p : kProblems) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) Check(p, ta, tb, 1.0f, 0.0f, GemmEpilogue::kNone);
    }
  }
}

TEST_F(CudaGemmTest, AlphaAndBetaMatchCpu) {
  for (const Problem& p : {Problem{63, 65, 127}, Problem{1, 17, 5}, Problem{31, 33, 35, 3}}) {
    Check(p, false, true, 1.5f, 0.5f, GemmEpilogue::kNone);
    Check(p, true, false, -0.25f, 1.0f, GemmEpilogue::kNone);
  }
}

TEST_F(CudaGemmTest, EpiloguesMatchCpuSgemmThenBiasActivation) {
  for (const Problem& p : kProblems) {
    for (GemmEpilogue ep : {GemmEpilogue::kBias, GemmEpilogue::kRelu, GemmEpilogue::kBiasRelu}) {
      Check(p, false, false, 1.0f, 0.0f, ep);
      Check(p, false, true, 1.0f, 0.0f, ep);  // Dense forward: x (B, in) * W^T
      Check(p, true, false, 0.5f, 0.75f, ep);
    }
  }
}

TEST_F(CudaGemmTest, ZeroKScalesCOrOverwrites) {
  Check({5, 7, 0}, false, false, 1.0f, 0.0f, GemmEpilogue::kNone);
  Check({5, 7, 0, 2}, false, false, 1.0f, 0.5f, GemmEpilogue::kBiasRelu);
}

TEST_F(CudaGemmTest, Tf32IsCloseToFp32) {
  for (const Problem& p : {Problem{128, 256, 64}, Problem{257, 129, 300}}) {
    Check(p, false, true, 1.0f, 0.0f, GemmEpilogue::kBiasRelu, /*tf32=*/true);
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
