// Fused SGD / Adam / AdamW over a flat range against the CPU kernels, for several
// consecutive steps. The kernels are built with --fmad=false and do the CPU's float
// operations in the CPU's order, so they should agree to the bit; the check allows
// 2 ulp so that a different libm pow/sqrt rounding cannot fail it, and prints the
// worst distance seen.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cpu/optimizer.h"
#include "kernels/cuda/optimizer.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::DeviceBuffer;
using testing::WithinUlps;

using CudaOptimizerTest = testing::CudaTest;

const int64_t kLengths[] = {1, 1000, 100003};
constexpr int kSteps = 4;
constexpr int64_t kMaxUlps = 2;

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  int64_t worst = 0;
  EXPECT_TRUE(WithinUlps(got, want, kMaxUlps, &worst)) << what;
  ::testing::Test::RecordProperty(std::string("max_ulp_") + what, static_cast<int>(worst));
  if (worst > 0)
    std::printf("  %s: worst distance %lld ulp\n", what, static_cast<long long>(worst));
}

struct SgdCase {
  float momentum, weight_decay;
  bool nesterov;
};

TEST_F(CudaOptimizerTest, SgdMatchesCpuOverSteps) {
  TestRng rng(61);
  const SgdCase cases[] = {
      {0.0f, 0.0f, false}, {0.0f, 1e-2f, false}, {0.9f, 0.0f, false}, {0.9f, 5e-4f, true}};
  for (const SgdCase& c : cases) {
    for (int64_t n : kLengths) {
      SCOPED_TRACE(::testing::Message() << "momentum=" << c.momentum << " wd=" << c.weight_decay
                                        << " nesterov=" << c.nesterov << " n=" << n);
      std::vector<float> p = rng.Vector(n), buf(n, 0.0f);
      DeviceBuffer<float> d_p(p), d_g(n), d_buf(buf);
      for (int step = 0; step < kSteps; ++step) {
        const std::vector<float> g = rng.Vector(n);
        d_g.Upload(g);
        SgdHyper h;
        h.lr = 0.05f;
        h.momentum = c.momentum;
        h.weight_decay = c.weight_decay;
        h.nesterov = c.nesterov;
        h.first_step = step == 0;
        cpu::SgdStep(h, p.data(), g.data(), buf.data(), n);
        SgdStep(h, d_p.get(), d_g.get(), c.momentum == 0.0f ? nullptr : d_buf.get(), n, stream_);
      }
      ExpectClose(d_p.Download(), p, "param");
      if (c.momentum != 0.0f) ExpectClose(d_buf.Download(), buf, "momentum");
    }
  }
}

TEST_F(CudaOptimizerTest, AdamAndAdamWMatchCpuOverSteps) {
  TestRng rng(62);
  for (bool decoupled : {false, true}) {
    for (float wd : {0.0f, 0.01f}) {
      for (int64_t n : kLengths) {
        SCOPED_TRACE(::testing::Message()
                     << "decoupled=" << decoupled << " wd=" << wd << " n=" << n);
        std::vector<float> p = rng.Vector(n), m(n, 0.0f), v(n, 0.0f);
        DeviceBuffer<float> d_p(p), d_g(n), d_m(m), d_v(v);
        for (int step = 1; step <= kSteps; ++step) {
          const std::vector<float> g = rng.Vector(n, -0.1f, 0.1f);
          d_g.Upload(g);
          AdamHyper h;
          h.lr = 1e-3f;
          h.weight_decay = wd;
          h.decoupled = decoupled;
          h.step = step;
          cpu::AdamStep(h, p.data(), g.data(), m.data(), v.data(), n);
          AdamStep(h, d_p.get(), d_g.get(), d_m.get(), d_v.get(), n, stream_);
        }
        ExpectClose(d_p.Download(), p, "param");
        ExpectClose(d_m.Download(), m, "m");
        ExpectClose(d_v.Download(), v, "v");
      }
    }
  }
}

TEST_F(CudaOptimizerTest, SubrangeUpdateLeavesTheRestAlone) {
  // ZeRO-1 style: update elements [100, 350) of a 1000-element arena only.
  TestRng rng(63);
  const int64_t n = 1000, lo = 100, len = 250;
  std::vector<float> p = rng.Vector(n), m(n, 0.0f), v(n, 0.0f);
  const std::vector<float> g = rng.Vector(n);
  DeviceBuffer<float> d_p(p), d_g(g), d_m(m), d_v(v);
  AdamHyper h;
  cpu::AdamStep(h, p.data() + lo, g.data() + lo, m.data() + lo, v.data() + lo, len);
  AdamStep(h, d_p.get() + lo, d_g.get() + lo, d_m.get() + lo, d_v.get() + lo, len, stream_);
  ExpectClose(d_p.Download(), p, "param");
}

}  // namespace
}  // namespace lockstep::kernels::cuda
