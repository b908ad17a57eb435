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

// The packed-B path (recurrent layers): B rounded once into the workspace and packed,
// A rounded per call; bitwise the fp32 backend's packed path on pre-rounded inputs, for
// both transposes of B, padded strides, the packed kernel (m <= 64) and OpenBLAS (m > 64).
TEST(Bf16GemmCpuTest, PackedPathRoundsToo) {
  auto bf16 = CreateCpuBackend(GemmPrecision::kBf16Inputs);
  auto fp32 = CreateCpuBackend(GemmPrecision::kFp32);
  TestRng rng(22);
  const int64_t n = 24, k = 40;
  for (bool tb : {false, true}) {
    for (int64_t m : {int64_t{4}, int64_t{70}}) {
      SCOPED_TRACE(::testing::Message() << "tb=" << tb << " m=" << m);
      const int64_t lda = k + 3, ldb = (tb ? k : n) + 5;
      const std::vector<float> a = rng.Vector(m * lda), b = rng.Vector((tb ? n : k) * ldb);
      const std::vector<float> ra = Rounded(a), rb = Rounded(b);
      std::vector<float> ws_bf16(bf16->GemmPackedBBytes(n, k) / sizeof(float));
      std::vector<float> ws_fp32(fp32->GemmPackedBBytes(n, k) / sizeof(float));
      EXPECT_EQ(ws_bf16.size(), ws_fp32.size() + static_cast<size_t>(n * k)) << "room for the rounded copy";
      Backend::PackedB pb = bf16->GemmPackB(tb, n, k, b.data(), ldb, ws_bf16.data());
      Backend::PackedB pf = fp32->GemmPackB(tb, n, k, rb.data(), ldb, ws_fp32.data());
      std::vector<float> got(m * n, -1.0f), want(m * n, -1.0f);
      bf16->GemmPackedB(m, a.data(), lda, pb, 0.5f, got.data(), n);
      fp32->GemmPackedB(m, ra.data(), lda, pf, 0.5f, want.data(), n);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
      std::vector<float> unrounded(m * n, -1.0f);  // and the rounding is not a no-op
      Backend::PackedB pu = fp32->GemmPackB(tb, n, k, b.data(), ldb, ws_fp32.data());
      fp32->GemmPackedB(m, a.data(), lda, pu, 0.5f, unrounded.data(), n);
      EXPECT_NE(std::memcmp(got.data(), unrounded.data(), got.size() * sizeof(float)), 0);
    }
  }
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

// Convolutions are GEMMs: with bf16 inputs each pass convolves its two operands rounded
// to bf16 (forward x and w, backward-data dy and w, backward-filter x and dy): bitwise
// the fp32 backend on pre-rounded operands, for an im2col shape and a 1x1 one, both
// betas of the filter gradient.
TEST(Bf16GemmCpuTest, ConvolutionsRoundTheirOperands) {
  auto bf16 = CreateCpuBackend(GemmPrecision::kBf16Inputs);
  auto fp32 = CreateCpuBackend(GemmPrecision::kFp32);
  TestRng rng(27);
  for (int64_t kernel : {int64_t{3}, int64_t{1}}) {
    SCOPED_TRACE(::testing::Message() << "kernel " << kernel);
    Conv2dShape s;
    s.batch = 3; s.in_h = 7; s.in_w = 6; s.in_c = 4; s.out_c = 5;
    s.kernel_h = s.kernel_w = kernel; s.pad_h = s.pad_w = kernel / 2;
    const int64_t xn = s.batch * s.in_h * s.in_w * s.in_c, wn = kernel * kernel * s.in_c * s.out_c,
                  yn = s.col_rows() * s.out_c;
    const std::vector<float> x = rng.Vector(xn), w = rng.Vector(wn), dy = rng.Vector(yn), dw0 = rng.Vector(wn);
    const std::vector<float> rx = Rounded(x), rw = Rounded(w), rdy = Rounded(dy);
    EXPECT_GE(bf16->Conv2dWorkspaceBytes(s), fp32->Conv2dWorkspaceBytes(s) + (xn + wn) * sizeof(float))
        << "room for the rounded copies";
    std::vector<float> ws16(bf16->Conv2dWorkspaceBytes(s) / sizeof(float) + 1);
    std::vector<float> ws32(fp32->Conv2dWorkspaceBytes(s) / sizeof(float) + 1);
    struct Pass {
      std::vector<float> got, want, unrounded;
    } y, dx, dw[2];
    y.got = y.want = y.unrounded = std::vector<float>(yn);
    bf16->Conv2dForward(s, x.data(), w.data(), y.got.data(), ws16.data());
    fp32->Conv2dForward(s, rx.data(), rw.data(), y.want.data(), ws32.data());
    fp32->Conv2dForward(s, x.data(), w.data(), y.unrounded.data(), ws32.data());
    dx.got = dx.want = dx.unrounded = std::vector<float>(xn);
    bf16->Conv2dBackwardData(s, dy.data(), w.data(), dx.got.data(), ws16.data());
    fp32->Conv2dBackwardData(s, rdy.data(), rw.data(), dx.want.data(), ws32.data());
    fp32->Conv2dBackwardData(s, dy.data(), w.data(), dx.unrounded.data(), ws32.data());
    for (int beta = 0; beta < 2; ++beta) {
      Pass& p = dw[beta];
      p.got = p.want = p.unrounded = dw0;
      bf16->Conv2dBackwardFilter(s, x.data(), dy.data(), float(beta), p.got.data(), ws16.data());
      fp32->Conv2dBackwardFilter(s, rx.data(), rdy.data(), float(beta), p.want.data(), ws32.data());
      fp32->Conv2dBackwardFilter(s, x.data(), dy.data(), float(beta), p.unrounded.data(), ws32.data());
    }
    for (const auto& [name, p] : {std::pair<const char*, const Pass*>{"y", &y}, {"dx", &dx}, {"dw beta 0", &dw[0]},
                                  {"dw beta 1", &dw[1]}}) {
      EXPECT_EQ(p->got, p->want) << name;
      EXPECT_NE(p->got, p->unrounded) << name << ": the rounding is not a no-op";
    }
  }
}

}  // namespace
}  // namespace lockstep
