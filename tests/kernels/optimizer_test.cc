// SGD and Adam/AdamW against the written formulas, evaluated here in double
// independently of the kernel code.
#include "kernels/cpu/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace lockstep::kernels::cpu {
namespace {

const std::vector<float> kParam0 = {0.5f, -1.25f, 2.0f, 0.0f, -0.75f};
const std::vector<std::vector<float>> kGrads = {{0.1f, -0.2f, 0.3f, 0.05f, -0.4f},
                                                {-0.3f, 0.1f, 0.2f, -0.15f, 0.25f},
                                                {0.2f, 0.0f, -0.1f, 0.35f, 0.05f}};

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-6 * std::max(1.0, std::fabs(want[i]))) << what << " [" << i << "]";
}

// PyTorch SGD written out: g = grad + wd p; buf = first ? g : mu buf + g;
// update = nesterov ? g + mu buf : buf (g if mu == 0); p -= lr update.
void CheckSgd(float lr, float mu, float wd, bool nesterov) {
  std::vector<float> p = kParam0, buf(p.size(), 123.0f);  // garbage: first step must ignore it
  std::vector<double> rp(kParam0.begin(), kParam0.end()), rbuf(p.size(), 0.0);
  for (size_t t = 0; t < kGrads.size(); ++t) {
    SgdHyper h;
    h.lr = lr;
    h.momentum = mu;
    h.weight_decay = wd;
    h.nesterov = nesterov;
    h.first_step = (t == 0);
    SgdStep(h, p.data(), kGrads[t].data(), mu == 0.0f ? nullptr : buf.data(),
            static_cast<int64_t>(p.size()));
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = static_cast<double>(kGrads[t][i]) + static_cast<double>(wd) * rp[i];
      double update = g;
      if (mu != 0.0f) {
        rbuf[i] = t == 0 ? g : static_cast<double>(mu) * rbuf[i] + g;
        update = nesterov ? g + static_cast<double>(mu) * rbuf[i] : rbuf[i];
      }
      rp[i] -= static_cast<double>(lr) * update;
    }
    ExpectClose(p, rp, "param");
    if (mu != 0.0f) ExpectClose(buf, rbuf, "momentum");
  }
}

TEST(CpuSgdTest, Plain) { CheckSgd(0.1f, 0.0f, 0.0f, false); }
TEST(CpuSgdTest, Momentum) { CheckSgd(0.1f, 0.9f, 0.0f, false); }
TEST(CpuSgdTest, Nesterov) { CheckSgd(0.05f, 0.9f, 0.0f, true); }
TEST(CpuSgdTest, WeightDecay) { CheckSgd(0.1f, 0.0f, 0.01f, false); }
TEST(CpuSgdTest, NesterovWithWeightDecay) { CheckSgd(0.1f, 0.8f, 0.05f, true); }

// The first step's numbers written by hand for p = 0.5, g = 0.1, lr = 0.1, mu = 0.9:
// buf = 0.1, p = 0.5 - 0.01 = 0.49; second g = -0.3: buf = 0.09 - 0.3 = -0.21,
// p = 0.49 + 0.021 = 0.511.
TEST(CpuSgdTest, MomentumHandValues) {
  float p = 0.5f, buf = 0.0f;
  SgdHyper h;
  h.lr = 0.1f;
  h.momentum = 0.9f;
  h.first_step = true;
  const float g1 = 0.1f, g2 = -0.3f;
  SgdStep(h, &p, &g1, &buf, 1);
  EXPECT_NEAR(p, 0.49, 1e-7);
  h.first_step = false;
  SgdStep(h, &p, &g2, &buf, 1);
  EXPECT_NEAR(buf, -0.21, 1e-7);
  EXPECT_NEAR(p, 0.511, 1e-7);
}

void CheckAdam(float wd, bool decoupled) {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  std::vector<float> p = kParam0, m(p.size(), 0.0f), v(p.size(), 0.0f);
  std::vector<double> rp(kParam0.begin(), kParam0.end()), rm(p.size(), 0.0), rv(p.size(), 0.0);
  for (size_t t = 0; t < kGrads.size(); ++t) {
    AdamHyper h;
    h.lr = static_cast<float>(lr);
    h.beta1 = static_cast<float>(b1);
    h.beta2 = static_cast<float>(b2);
    h.eps = static_cast<float>(eps);
    h.weight_decay = wd;
    h.decoupled = decoupled;
    h.step = static_cast<int64_t>(t + 1);
    AdamStep(h, p.data(), kGrads[t].data(), m.data(), v.data(), static_cast<int64_t>(p.size()));
    const double step = static_cast<double>(t + 1);
    for (size_t i = 0; i < p.size(); ++i) {
      double g = kGrads[t][i];
      if (decoupled) {
        rp[i] -= lr * wd * rp[i];
      } else {
        g += wd * rp[i];
      }
      rm[i] = b1 * rm[i] + (1 - b1) * g;
      rv[i] = b2 * rv[i] + (1 - b2) * g * g;
      const double mhat = rm[i] / (1 - std::pow(b1, step));
      const double vhat = rv[i] / (1 - std::pow(b2, step));
      rp[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
    ExpectClose(p, rp, "param");
    ExpectClose(m, rm, "m");
    ExpectClose(v, rv, "v");
  }
}

TEST(CpuAdamTest, NoWeightDecay) { CheckAdam(0.0f, false); }
TEST(CpuAdamTest, CoupledL2) { CheckAdam(0.1f, false); }
TEST(CpuAdamTest, DecoupledAdamW) { CheckAdam(0.1f, true); }

// First Adam step moves every parameter by ~lr * sign(g) (bias correction makes
// mhat = g, vhat = g^2), the textbook sanity value.
TEST(CpuAdamTest, FirstStepIsLrTimesSign) {
  std::vector<float> p = kParam0, m(5, 0.0f), v(5, 0.0f);
  AdamHyper h;
  h.lr = 0.01f;
  h.eps = 0.0f;
  AdamStep(h, p.data(), kGrads[0].data(), m.data(), v.data(), 5);
  for (int i = 0; i < 5; ++i) {
    const double sign = kGrads[0][i] > 0 ? 1.0 : -1.0;
    EXPECT_NEAR(p[i], kParam0[i] - 0.01 * sign, 1e-6) << i;
  }
}

}  // namespace
}  // namespace lockstep::kernels::cpu
