// Schedules at chosen steps, and the runtime Optimizer over a sub-range of the
// arena (what ZeRO-1 relies on) against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/core/optimizer.h"

namespace lockstep {
namespace {

TEST(Schedule, ConstantWithWarmup) {
  ScheduleConfig s;
  s.base_lr = 0.1f;
  s.warmup_steps = 4;
  EXPECT_FLOAT_EQ(LearningRateAt(s, 0), 0.025f);
  EXPECT_FLOAT_EQ(LearningRateAt(s, 3), 0.1f);
  EXPECT_FLOAT_EQ(LearningRateAt(s, 100), 0.1f);
}

TEST(Schedule, StepDecay) {
  ScheduleConfig s;
  s.kind = ScheduleKind::kStepDecay;
  s.base_lr = 1.0f;
  s.decay_steps = 10;
  s.gamma = 0.5f;
  EXPECT_FLOAT_EQ(LearningRateAt(s, 9), 1.0f);
  EXPECT_FLOAT_EQ(LearningRateAt(s, 10), 0.5f);
  EXPECT_FLOAT_EQ(LearningRateAt(s, 25), 0.25f);
}

TEST(Schedule, CosineWithWarmup) {
  ScheduleConfig s;
  s.kind = ScheduleKind::kCosine;
  s.base_lr = 1.0f;
  s.min_lr = 0.0f;
  s.warmup_steps = 10;
  s.total_steps = 100;
  EXPECT_FLOAT_EQ(LearningRateAt(s, 4), 0.5f);     // warm-up: (4+1)/10
  EXPECT_FLOAT_EQ(LearningRateAt(s, 10), 1.0f);    // cosine starts at the peak
  EXPECT_NEAR(LearningRateAt(s, 60), 0.5f, 1e-6);  // half-way: cos(pi/2) = 0
  EXPECT_NEAR(LearningRateAt(s, 35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-6);
  EXPECT_FLOAT_EQ(LearningRateAt(s, 110), 0.0f);
  EXPECT_FLOAT_EQ(LearningRateAt(s, 500), 0.0f);
}

TEST(Schedule, InvalidConfigsAreRejected) {
  ScheduleConfig s;
  s.base_lr = 0;
  EXPECT_FALSE(ValidateSchedule(s).ok());
  s.base_lr = 1;
  s.kind = ScheduleKind::kStepDecay;
  s.decay_steps = 0;
  EXPECT_FALSE(ValidateSchedule(s).ok());
}

TEST(Optimizer, SgdMomentumOnASubRangeByHand) {
  auto be = CreateCpuBackend();
  OptimizerConfig c;
  c.kind = OptimizerKind::kSgd;
  c.momentum = 0.9f;
  auto opt = Optimizer::Create(be.get(), c, 1, 3);
  ASSERT_TRUE(opt.ok());
  float p[4] = {1, 1, 2, 1};
  float g[4] = {5, 0.5f, -1, 5};
  (*opt)->Step(0.1f, p, g);  // buf = g; p -= 0.1 g
  EXPECT_FLOAT_EQ(p[0], 1);
  EXPECT_FLOAT_EQ(p[1], 0.95f);
  EXPECT_FLOAT_EQ(p[2], 2.1f);
  EXPECT_FLOAT_EQ(p[3], 1);
  (*opt)->Step(0.1f, p, g);  // buf = 0.9 g + g = 1.9 g; p -= 0.19 g
  EXPECT_NEAR(p[1], 0.95 - 0.095, 1e-6);
  EXPECT_NEAR(p[2], 2.1 + 0.19, 1e-6);
  EXPECT_EQ((*opt)->steps_taken(), 2);
}

TEST(Optimizer, AdamFirstStepMovesByLearningRate) {
  auto be = CreateCpuBackend();
  OptimizerConfig c;  // Adam, eps 1e-7
  auto opt = Optimizer::Create(be.get(), c, 0, 2);
  ASSERT_TRUE(opt.ok());
  float p[2] = {1, -1};
  float g[2] = {0.3f, -2.0f};
  (*opt)->Step(0.01f, p, g);
  // Bias-corrected first step: m_hat = g, v_hat = g^2, update = lr * g / (|g| + eps).
  EXPECT_NEAR(p[0], 1 - 0.01 * 0.3 / (0.3 + 1e-7), 1e-7);
  EXPECT_NEAR(p[1], -1 + 0.01 * 2.0 / (2.0 + 1e-7), 1e-7);
  ASSERT_EQ((*opt)->state().size(), 2u);
}

TEST(Optimizer, InvalidHyperparametersAreRejected) {
  OptimizerConfig c;
  c.kind = OptimizerKind::kSgd;
  c.nesterov = true;
  EXPECT_FALSE(Optimizer::Validate(c).ok());
  c = OptimizerConfig{};
  c.beta2 = 1.0f;
  EXPECT_FALSE(Optimizer::Validate(c).ok());
}

}  // namespace
}  // namespace lockstep
