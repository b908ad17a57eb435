#include "tests/core/gradient_check.h"

namespace lockstep::testing {
namespace {

double Objective(Layer& layer, const StepContext& ctx, const std::vector<float>& x,
                 const std::vector<float>& r, int64_t batch) {
  std::vector<float> y(r.size());
  layer.Forward(ctx, x.data(), y.data(), batch);
  double l = 0;
  for (size_t i = 0; i < y.size(); ++i) l += static_cast<double>(y[i]) * r[i];
  return l;
}

void ExpectClose(double numeric, double analytic, const GradCheckOptions& o, const std::string& what) {
  EXPECT_LE(std::fabs(numeric - analytic), o.abs_tol + o.rel_tol * std::fabs(numeric))
      << what << ": numeric " << numeric << " analytic " << analytic;
}

}  // namespace

void CheckLayerGradients(Layer& layer, Backend& backend, int64_t batch, std::vector<float> x,
                         const StepContext& ctx_template, GradCheckOptions opt) {
  StepContext ctx = ctx_template;
  ctx.backend = &backend;
  ctx.grad_beta = 0.0f;
  const int64_t in_elems = NumElements(layer.input_shape()) * batch;
  const int64_t out_elems = NumElements(layer.output_shape()) * batch;
  ASSERT_EQ(static_cast<int64_t>(x.size()), in_elems);

  // Parameters: one buffer per spec, values random but deterministic.
  std::vector<ParamSpec> specs = layer.ParamSpecs();
  std::vector<std::vector<float>> params, grads;
  std::vector<Tensor> pt, gt;
  for (size_t i = 0; i < specs.size(); ++i) {
    params.push_back(RandomVector(static_cast<size_t>(NumElements(specs[i].shape)), 100 + static_cast<uint32_t>(i), -0.5f, 0.5f));
    grads.emplace_back(params.back().size(), 123.0f);  // garbage: beta=0 must overwrite it
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    pt.push_back(Tensor::View(params[i].data(), specs[i].shape, DType::kFloat32, backend.device()));
    gt.push_back(Tensor::View(grads[i].data(), specs[i].shape, DType::kFloat32, backend.device()));
  }
  layer.BindParams(pt, gt);

  std::vector<float> r = RandomVector(static_cast<size_t>(out_elems), 7);
  std::vector<float> y(static_cast<size_t>(out_elems)), dx(static_cast<size_t>(in_elems), 55.0f);
  layer.Forward(ctx, x.data(), y.data(), batch);
  layer.Backward(ctx, x.data(), y.data(), r.data(), dx.data(), batch);

  // Input gradient: every element when small, else a strided sample.
  int64_t stride = std::max<int64_t>(1, in_elems / 200);
  for (int64_t i = 0; i < in_elems; i += stride) {
    std::vector<float> xp = x, xm = x;
    xp[static_cast<size_t>(i)] += opt.epsilon;
    xm[static_cast<size_t>(i)] -= opt.epsilon;
    double numeric = (Objective(layer, ctx, xp, r, batch) - Objective(layer, ctx, xm, r, batch)) /
                     (2.0 * opt.epsilon);
    ExpectClose(numeric, dx[static_cast<size_t>(i)], opt, "dx[" + std::to_string(i) + "]");
  }
  for (size_t p = 0; p < specs.size(); ++p) {
    int64_t n = static_cast<int64_t>(params[p].size());
    int64_t pstride = std::max<int64_t>(1, n / 200);
    for (int64_t i = 0; i < n; i += pstride) {
      float saved = params[p][static_cast<size_t>(i)];
      params[p][static_cast<size_t>(i)] = saved + opt.epsilon;
      double lp = Objective(layer, ctx, x, r, batch);
      params[p][static_cast<size_t>(i)] = saved - opt.epsilon;
      double lm = Objective(layer, ctx, x, r, batch);
      params[p][static_cast<size_t>(i)] = saved;
      ExpectClose((lp - lm) / (2.0 * opt.epsilon), grads[p][static_cast<size_t>(i)], opt,
                  specs[p].name + "[" + std::to_string(i) + "]");
    }
  }
  // Accumulation: a second backward with beta = 1 doubles the parameter gradients.
  if (!specs.empty()) {
    std::vector<float> first = grads[0];
    ctx.grad_beta = 1.0f;
    layer.Forward(ctx, x.data(), y.data(), batch);
    layer.Backward(ctx, x.data(), y.data(), r.data(), dx.data(), batch);
    for (size_t i = 0; i < first.size(); ++i) {
      ASSERT_NEAR(grads[0][i], 2.0f * first[i], 1e-4f + 1e-5f * std::fabs(first[i])) << "accumulate " << i;
    }
  }
}

}  // namespace lockstep::testing
