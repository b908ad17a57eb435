// training.precision: BF16_GEMM on the CPU backend: its GEMMs (plain and through the
// packed-B path the recurrent layers use) must equal sgemm on inputs rounded to bf16,
// bit for bit, for every transpose and padded strides; everything else is untouched.
// This emulation is the CUDA backend's reference (tests/core/cuda_backend_test.cc).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
#include "runtime/core/backend.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep {
namespace {

using kernels::testing::TestRng;

std::vector<float> Rounded(std::vector<float> v) {
  kernels::cpu::RoundToBf16(v.data(), v.data(), static_cast<int64_t>(v.size()));
  return v;
}

TEST(Bf16GemmCpuTest, EqualsSgemmOnRoundedInputs) {
  auto be = CreateCpuBackend(GemmPrecision::kBf16Inputs);
  TestRng rng(21);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb);
      const int64_t m = 13, n = 17, k = 70, lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 1;
      const std::vector<float> a = rng.Vector((ta ? k : m) * lda), b = rng.Vector((tb ? n : k) * ldb),
                               c0 = rng.Vector(m * ldc);
      std::vector<float> got = c0, want = c0;
      be->Gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 1.0f, got.data(), ldc);
      const std::vector<float> ra = Rounded(a), rb = Rounded(b);
      kernels::cpu::Sgemm(ta, tb, m, n, k, 0.5f, ra.data(), lda, rb.data(), ldb, 1.0f, want.data(), ldc);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
      // The rounding is not a no-op: fp32 inputs give a different product.
      std::vector<float> fp32 = c0;
      kernels::cpu::Sgemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 1.0f, fp32.data(), ldc);
      EXPECT_NE(std::memcmp(got.data(), fp32.data(), got.size() * sizeof(float)), 0);
    }
  }
}

TEST(Bf16GemmCpuTest, PackedPathRoundsToo) {
  auto be = CreateCpuBackend(GemmPrecision::kBf16Inputs);
  TestRng rng(22);
  const int64_t m = 4, n = 24, k = 40;
  const std::vector<float> a = rng.Vector(m * k), b = rng.Vector(n * k);
  EXPECT_EQ(be->GemmPackedBBytes(n, k), 0u) << "nothing is packed with bf16 inputs";
  Backend::PackedB packed = be->GemmPackB(/*trans_b=*/true, n, k, b.data(), k, nullptr);
  std::vector<float> got(m * n, -1.0f), want(m * n, -1.0f);
  be->GemmPackedB(m, a.data(), k, packed, 0.0f, got.data(), n);
  const std::vector<float> ra = Rounded(a), rb = Rounded(b);
  kernels::cpu::Sgemm(false, true, m, n, k, 1.0f, ra.data(), k, rb.data(), k, 0.0f, want.data(), n);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
}

TEST(Bf16GemmCpuTest, Fp32BackendIsUnchanged) {
  auto be = CreateCpuBackend();
  TestRng rng(23);
  const std::vector<float> a = rng.Vector(6 * 9), b = rng.Vector(9 * 5);
  std::vector<float> got(30), want(30);
  be->Gemm(false, false, 6, 5, 9, 1.0f, a.data(), 9, b.data(), 5, 0.0f, got.data(), 5);
  kernels::cpu::Sgemm(false, false, 6, 5, 9, 1.0f, a.data(), 9, b.data(), 5, 0.0f, want.data(), 5);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace lockstep
