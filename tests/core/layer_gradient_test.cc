// Finite-difference gradient checks for every layer type, including stride and
// padding variants of Conv2D and MaxPool2D. Tolerance: |num - ana| <= 2e-3 + 2e-2 |num|
// with central differences of step 1e-2 in float (GradCheckOptions).
#include <gtest/gtest.h>

#include "runtime/core/layer.h"
#include "tests/core/gradient_check.h"

namespace lockstep {
namespace {

using testing::AvoidZero;
using testing::CheckLayerGradients;
using testing::RandomVector;

struct Fixture {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  StepContext ctx;
};

void BuildOrDie(Layer& layer, const Shape& in) {
  auto out = layer.Build(in);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
}

TEST(LayerGradient, Dense) {
  Fixture f;
  auto layer = MakeDense(5, true);
  BuildOrDie(*layer, {7});
  CheckLayerGradients(*layer, *f.backend, 3, RandomVector(21, 1), f.ctx);
}

TEST(LayerGradient, DenseWithoutBias) {
  Fixture f;
  auto layer = MakeDense(4, false);
  BuildOrDie(*layer, {6});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(12, 2), f.ctx);
}

class FusedDenseGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(FusedDenseGradient, MatchesFiniteDifferences) {
  Fixture f;
  auto layer = MakeDense(6, true, ParamInit::kGlorotUniform, GetParam());
  BuildOrDie(*layer, {5});
  // Fixed seeds: no pre-activation lies within the FD step of a ReLU kink.
  CheckLayerGradients(*layer, *f.backend, 3, RandomVector(15, 8), f.ctx);
}

INSTANTIATE_TEST_SUITE_P(Fused, FusedDenseGradient,
                         ::testing::Values(Activation::kRelu, Activation::kTanh, Activation::kSigmoid),
                         [](const ::testing::TestParamInfo<Activation>& i) {
                           return std::string(ActivationName(i.param));
                         });

TEST(LayerGradient, Conv2dWithFusedTanh) {
  Fixture f;
  Conv2dOptions o;
  o.filters = 3;
  o.stride_h = o.stride_w = 2;
  o.pad_h = o.pad_w = 1;
  o.activation = Activation::kTanh;
  auto layer = MakeConv2d(o);
  BuildOrDie(*layer, {5, 5, 2});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(100, 9), f.ctx);
}

struct ConvCase {
  const char* name;
  Shape input;  // (h, w, c)
  Conv2dOptions options;
  int64_t batch;
};

class ConvGradient : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGradient, MatchesFiniteDifferences) {
  Fixture f;
  const ConvCase& c = GetParam();
  auto layer = MakeConv2d(c.options);
  BuildOrDie(*layer, c.input);
  CheckLayerGradients(*layer, *f.backend, c.batch,
                      RandomVector(static_cast<size_t>(NumElements(c.input) * c.batch), 3), f.ctx);
}

Conv2dOptions ConvOpts(int64_t filters, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                       int64_t pw) {
  Conv2dOptions o;
  o.filters = filters;
  o.kernel_h = kh;
  o.kernel_w = kw;
  o.stride_h = sh;
  o.stride_w = sw;
  o.pad_h = ph;
  o.pad_w = pw;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, ConvGradient,
    ::testing::Values(ConvCase{"k3_s1_p0", {6, 6, 1}, ConvOpts(3, 3, 3, 1, 1, 0, 0), 2},
                      ConvCase{"k3_s2_p1", {7, 7, 2}, ConvOpts(4, 3, 3, 2, 2, 1, 1), 2},
                      ConvCase{"k2x3_s1x2_p1x0", {5, 8, 3}, ConvOpts(2, 2, 3, 1, 2, 1, 0), 1},
                      ConvCase{"k1_pointwise", {4, 4, 3}, ConvOpts(5, 1, 1, 1, 1, 0, 0), 2},
                      ConvCase{"k5_s1_p2_same", {6, 5, 2}, ConvOpts(3, 5, 5, 1, 1, 2, 2), 1}),
    [](const ::testing::TestParamInfo<ConvCase>& i) { return std::string(i.param.name); });

struct PoolCase {
  const char* name;
  Shape input;
  Pool2dOptions options;
};

class PoolGradient : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolGradient, MatchesFiniteDifferences) {
  Fixture f;
  const PoolCase& c = GetParam();
  auto layer = MakeMaxPool2d(c.options);
  BuildOrDie(*layer, c.input);
  // Distinct values spaced well beyond the FD step, so no perturbation changes an argmax.
  int64_t n = NumElements(c.input) * 2;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = 0.05f * static_cast<float>((i * 37) % n) - 1.0f;
  CheckLayerGradients(*layer, *f.backend, 2, x, f.ctx);
}

Pool2dOptions PoolOpts(int64_t w, int64_t s, int64_t p) {
  Pool2dOptions o;
  o.window_h = o.window_w = w;
  o.stride_h = o.stride_w = s;
  o.pad_h = o.pad_w = p;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, PoolGradient,
    ::testing::Values(PoolCase{"w2_s2", {6, 6, 2}, PoolOpts(2, 2, 0)},
                      PoolCase{"w3_s2_p1", {7, 7, 1}, PoolOpts(3, 2, 1)},
                      PoolCase{"w3_s1_overlapping", {5, 5, 2}, PoolOpts(3, 1, 0)},
                      PoolCase{"w2_s2_odd_input", {5, 7, 3}, PoolOpts(2, 2, 0)}),
    [](const ::testing::TestParamInfo<PoolCase>& i) { return std::string(i.param.name); });

class ActivationGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationGradient, MatchesFiniteDifferences) {
  Fixture f;
  auto layer = MakeActivation(GetParam());
  BuildOrDie(*layer, {3, 4});
  std::vector<float> x = RandomVector(24, 4, -2.0f, 2.0f);
  AvoidZero(&x, 0.05f);
  CheckLayerGradients(*layer, *f.backend, 2, x, f.ctx);
}

INSTANTIATE_TEST_SUITE_P(All, ActivationGradient,
                         ::testing::Values(Activation::kIdentity, Activation::kRelu, Activation::kTanh,
                                           Activation::kSigmoid, Activation::kGelu),
                         [](const ::testing::TestParamInfo<Activation>& i) {
                           return std::string(ActivationName(i.param));
                         });

TEST(LayerGradient, Flatten) {
  Fixture f;
  auto layer = MakeFlatten();
  BuildOrDie(*layer, {2, 3, 2});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(24, 5), f.ctx);
}

TEST(LayerGradient, DropoutInTraining) {
  Fixture f;
  f.ctx.training = true;
  f.ctx.seed = 9;
  f.ctx.step = 3;
  auto layer = MakeDropout(0.4f);
  BuildOrDie(*layer, {10});
  CheckLayerGradients(*layer, *f.backend, 4, RandomVector(40, 6), f.ctx);
}

TEST(LayerGradient, DropoutIsIdentityInEvaluation) {
  Fixture f;
  auto layer = MakeDropout(0.5f);
  BuildOrDie(*layer, {8});
  std::vector<float> x = RandomVector(16, 7), y(16);
  f.ctx.backend = f.backend.get();
  layer->Forward(f.ctx, x.data(), y.data(), 2);
  EXPECT_EQ(x, y);
}

TEST(LayerBuild, ImpossibleShapesAreErrors) {
  auto conv = MakeConv2d(ConvOpts(4, 5, 5, 1, 1, 0, 0));
  auto out = conv->Build({3, 3, 1});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("empty output"), std::string::npos) << out.status().message();
  auto pool = MakeMaxPool2d(PoolOpts(4, 4, 0));
  EXPECT_FALSE(pool->Build({3, 3, 1}).ok());
  auto dense = MakeDense(3, true);
  EXPECT_FALSE(dense->Build({3, 3}).ok()) << "dense needs a flat input";
  EXPECT_FALSE(MakeDropout(1.0f)->Build({3}).ok());
}

}  // namespace
}  // namespace lockstep
