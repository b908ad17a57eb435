// Sequential model: arena layout, gradient-ready prefixes, initialisation,
// and an end-to-end gradient check of a small CNN through Model::Backward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "runtime/core/loss.h"
#include "runtime/core/model.h"
#include "tests/core/gradient_check.h"

namespace lockstep {
namespace {

using testing::RandomVector;

std::unique_ptr<Model> SmallCnn(Backend* be) {
  std::vector<std::unique_ptr<Layer>> layers;
  Conv2dOptions c;
  c.filters = 3;
  c.pad_h = c.pad_w = 1;
  layers.push_back(MakeConv2d(c));
  layers.push_back(MakeActivation(Activation::kTanh));
  layers.push_back(MakeMaxPool2d(Pool2dOptions{}));
  layers.push_back(MakeFlatten());
  layers.push_back(MakeDense(4, true));
  auto model = Model::Create(be, {6, 6, 1}, std::move(layers));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return std::move(model).value();
}

TEST(Model, ArenaIsInReverseLayerOrder) {
  auto be = CreateCpuBackend();
  auto model = SmallCnn(be.get());
  const auto& infos = model->param_infos();
  ASSERT_EQ(infos.size(), 4u);
  EXPECT_EQ(infos[0].name, "layer4.dense.kernel");
  EXPECT_EQ(infos[0].offset, 0);
  EXPECT_EQ(infos[1].name, "layer4.dense.bias");
  EXPECT_EQ(infos[2].name, "layer0.conv2d.kernel");
  EXPECT_EQ(infos[3].offset + 3, model->param_count());
  EXPECT_EQ(model->param_count(), 27 * 4 + 4 + 9 * 3 + 3);
}

TEST(Model, GradientsBecomeReadyAsAGrowingPrefix) {
  auto be = CreateCpuBackend();
  auto model = SmallCnn(be.get());
  model->InitializeParameters(1);
  std::vector<float> x = RandomVector(2 * 36, 2);
  StepContext ctx;
  ctx.backend = be.get();
  Tensor out = model->Forward(ctx, Tensor::View(x.data(), {2, 6, 6, 1}, DType::kFloat32, be->device()));
  std::vector<float> dy = RandomVector(8, 3);
  std::vector<int64_t> prefixes;
  model->Backward(ctx, Tensor::View(dy.data(), {2, 4}, DType::kFloat32, be->device()),
                  [&](int64_t p) { prefixes.push_back(p); });
  ASSERT_EQ(prefixes.size(), 5u);
  for (size_t i = 1; i < prefixes.size(); ++i) EXPECT_GE(prefixes[i], prefixes[i - 1]);
  EXPECT_EQ(prefixes.front(), 4 * 27 + 4);
  EXPECT_EQ(prefixes.back(), model->param_count());
}

TEST(Model, InitialisationIsSeededAndWithinGlorotBounds) {
  auto be = CreateCpuBackend();
  auto a = SmallCnn(be.get()), b = SmallCnn(be.get()), c = SmallCnn(be.get());
  a->InitializeParameters(42);
  b->InitializeParameters(42);
  c->InitializeParameters(43);
  const float* pa = a->params().data<float>();
  const float* pb = b->params().data<float>();
  const float* pc = c->params().data<float>();
  int64_t n = a->param_count();
  EXPECT_EQ(0, std::memcmp(pa, pb, static_cast<size_t>(n) * sizeof(float)));
  EXPECT_NE(0, std::memcmp(pa, pc, static_cast<size_t>(n) * sizeof(float)));
  for (const ParamInfo& info : a->param_infos()) {
    int64_t count = NumElements(info.shape);
    double limit = std::sqrt(6.0 / static_cast<double>(info.spec.fan_in + info.spec.fan_out));
    double sum_sq = 0;
    for (int64_t i = 0; i < count; ++i) {
      float v = pa[info.offset + i];
      if (info.spec.init == ParamInit::kZeros) {
        EXPECT_EQ(v, 0.0f) << info.name;
      } else {
        EXPECT_LE(std::fabs(v), limit) << info.name;
      }
      sum_sq += static_cast<double>(v) * v;
    }
    if (info.spec.init != ParamInit::kZeros) {
      // Uniform(-l, l) has variance l^2/3; 108 samples land well within 50%.
      EXPECT_NEAR(sum_sq / static_cast<double>(count), limit * limit / 3.0, 0.5 * limit * limit / 3.0) << info.name;
    }
  }
}

// Checks analytic[i] against central differences of `loss` in values[i], for
// every `stride`-th element.
void ExpectMatchesCentralDifferences(float* values, const float* analytic, int64_t count, int64_t stride,
                                     const std::function<double()>& loss, const char* what) {
  const float eps = 1e-2f;
  for (int64_t i = 0; i < count; i += stride) {
    float saved = values[i];
    values[i] = saved + eps;
    double lp = loss();
    values[i] = saved - eps;
    double lm = loss();
    values[i] = saved;
    double numeric = (lp - lm) / (2 * eps);
    EXPECT_NEAR(analytic[i], numeric, 2e-3 + 3e-2 * std::fabs(numeric)) << what << " " << i;
  }
}

// Parameter gradients, and the input gradient a GAN's generator learns through.
TEST(Model, WholeModelGradientsMatchFiniteDifferences) {
  auto be = CreateCpuBackend();
  auto model = SmallCnn(be.get());
  model->InitializeParameters(5);
  std::vector<float> x = RandomVector(2 * 36, 6);
  std::vector<int32_t> labels = {1, 3};
  Tensor xt = Tensor::View(x.data(), {2, 6, 6, 1}, DType::kFloat32, be->device());
  Tensor yt = Tensor::View(labels.data(), {2}, DType::kInt32, be->device());
  StepContext ctx;
  ctx.backend = be.get();
  auto loss = [&]() {
    Tensor out = model->Forward(ctx, xt);
    return ComputeLoss(*be, LossKind::kSoftmaxCrossEntropy, out, yt, 1.0f, nullptr).sum;
  };
  Tensor out = model->Forward(ctx, xt);
  std::vector<float> dout(8), dx(x.size(), -7.0f);
  Tensor dt = Tensor::View(dout.data(), {2, 4}, DType::kFloat32, be->device());
  Tensor dxt = Tensor::View(dx.data(), {2, 6, 6, 1}, DType::kFloat32, be->device());
  ComputeLoss(*be, LossKind::kSoftmaxCrossEntropy, out, yt, 1.0f, &dt);
  model->Backward(ctx, dt, nullptr, &dxt);
  std::vector<float> grads(model->grads().data<float>(), model->grads().data<float>() + model->param_count());
  ExpectMatchesCentralDifferences(model->params().data<float>(), grads.data(), model->param_count(), 3, loss,
                                  "param");
  ExpectMatchesCentralDifferences(x.data(), dx.data(), static_cast<int64_t>(x.size()), 1, loss, "input element");
  // Without dinput, the parameter gradients are the same.
  model->Forward(ctx, xt);
  model->Backward(ctx, dt);
  EXPECT_EQ(0, std::memcmp(grads.data(), model->grads().data<float>(), grads.size() * sizeof(float)));
}

TEST(Model, ShapeErrorsNameTheLayer) {
  auto be = CreateCpuBackend();
  std::vector<std::unique_ptr<Layer>> layers;
  Conv2dOptions c;
  c.kernel_h = c.kernel_w = 9;
  layers.push_back(MakeConv2d(c));
  auto model = Model::Create(be.get(), {4, 4, 1}, std::move(layers), {"recipe.pbtxt:7: model.layers[0]"});
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("recipe.pbtxt:7: model.layers[0]"), std::string::npos);
  EXPECT_NE(model.status().message().find("empty output"), std::string::npos);
}

}  // namespace
}  // namespace lockstep
