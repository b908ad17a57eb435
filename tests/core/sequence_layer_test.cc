// Sequence layers: finite-difference gradient checks of every layer (LSTM and
// GRU over several steps in both return modes, causal attention, LayerNorm,
// embeddings, the transformer block), forward checks against naive double
// references, causality of attention, shape errors, the per-time-step loss and
// a tiny language model that learns. FD tolerance (GradCheckOptions):
// |num - ana| <= 2e-3 + 2e-2 |num|, central differences of step 1e-2 in float,
// unless a test states otherwise.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/core/model.h"
#include "runtime/core/optimizer.h"
#include "runtime/core/sequence_layers.h"
#include "runtime/core/sequence_loss.h"
#include "tests/core/gradient_check.h"

namespace lockstep {
namespace {

using testing::CheckLayerGradients;
using testing::RandomVector;

struct Fixture {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  StepContext ctx;
  Fixture() { ctx.backend = backend.get(); }
};

void BuildOrDie(Layer& layer, const Shape& in) {
  auto out = layer.Build(in);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
}

// Binds fresh host buffers with deterministic values to a layer's parameters.
struct BoundParams {
  std::vector<std::vector<float>> values, grads;
  BoundParams(Layer& layer, Backend& be, uint32_t seed, float scale = 0.5f) {
    std::vector<Tensor> p, g;
    auto specs = layer.ParamSpecs();
    for (size_t i = 0; i < specs.size(); ++i) {
      values.push_back(RandomVector(static_cast<size_t>(NumElements(specs[i].shape)),
                                    seed + static_cast<uint32_t>(i), -scale, scale));
      grads.emplace_back(values.back().size(), 0.0f);
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      p.push_back(Tensor::View(values[i].data(), specs[i].shape, DType::kFloat32, be.device()));
      g.push_back(Tensor::View(grads[i].data(), specs[i].shape, DType::kFloat32, be.device()));
    }
    layer.BindParams(p, g);
  }
};

std::vector<float> TokenIds(size_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<float> ids(n);
  for (auto& v : ids) v = static_cast<float>(gen() % static_cast<uint32_t>(vocab));
  return ids;
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// ---- gradient checks ----

TEST(SequenceLayerGradient, Embedding) {
  Fixture f;
  auto layer = MakeEmbedding(7, 3);
  BuildOrDie(*layer, {5});
  // 2 x 5 ids over a vocabulary of 7: repeats exercise the scatter-add.
  CheckLayerGradients(*layer, *f.backend, 2, TokenIds(10, 7, 1), f.ctx);
}

TEST(SequenceLayerGradient, PositionalEmbeddingShorterThanMaxLen) {
  Fixture f;
  auto layer = MakePositionalEmbedding(6, 3);
  BuildOrDie(*layer, {4, 3});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(24, 2), f.ctx);
}

TEST(SequenceLayerGradient, LayerNorm) {
  Fixture f;
  auto layer = MakeLayerNorm(1e-5f);
  BuildOrDie(*layer, {3, 5});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(30, 3, -2.0f, 2.0f), f.ctx);
}

struct RecurrentCase {
  const char* name;
  bool gru;
  bool return_sequences;
};

void PrintTo(const RecurrentCase& c, std::ostream* os) { *os << c.name; }

class RecurrentGradient : public ::testing::TestWithParam<RecurrentCase> {};

TEST_P(RecurrentGradient, MatchesFiniteDifferencesOverSixSteps) {
  Fixture f;
  const RecurrentCase& c = GetParam();
  auto layer = c.gru ? MakeGru(4, c.return_sequences) : MakeLstm(4, c.return_sequences);
  BuildOrDie(*layer, {6, 3});  // T = 6 steps of 3 features
  CheckLayerGradients(*layer, *f.backend, 3, RandomVector(3 * 6 * 3, 4), f.ctx);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, RecurrentGradient,
    ::testing::Values(RecurrentCase{"lstm_last", false, false}, RecurrentCase{"lstm_sequences", false, true},
                      RecurrentCase{"gru_last", true, false}, RecurrentCase{"gru_sequences", true, true}),
    [](const ::testing::TestParamInfo<RecurrentCase>& i) { return std::string(i.param.name); });

TEST(SequenceLayerGradient, LstmSingleStep) {
  Fixture f;
  auto layer = MakeLstm(3, false);
  BuildOrDie(*layer, {1, 2});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(4, 5), f.ctx);
}

TEST(SequenceLayerGradient, CausalSelfAttention) {
  Fixture f;
  auto layer = MakeCausalSelfAttention(2, 6);
  BuildOrDie(*layer, {5, 6});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(60, 6), f.ctx);
}

TEST(SequenceLayerGradient, TransformerBlock) {
  Fixture f;
  auto layer = MakeTransformerBlock(2, 4, 8);
  BuildOrDie(*layer, {4, 4});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(32, 7), f.ctx);
}

TEST(SequenceLayerGradient, TimeDistributedDenseWithTanh) {
  Fixture f;
  auto layer = MakeTimeDistributedDense(5, true, Activation::kTanh);
  BuildOrDie(*layer, {3, 4});
  CheckLayerGradients(*layer, *f.backend, 2, RandomVector(24, 8), f.ctx);
}

// ---- forward against naive references ----

TEST(SequenceLayerForward, LstmMatchesNaiveReference) {
  Fixture f;
  const int64_t T = 4, F = 3, U = 2, B = 2;
  auto layer = MakeLstm(U, true);
  BuildOrDie(*layer, {T, F});
  BoundParams p(*layer, *f.backend, 11);
  const auto &W = p.values[0], &R = p.values[1], &bias = p.values[2];
  std::vector<float> x = RandomVector(B * T * F, 12), y(B * T * U);
  layer->Forward(f.ctx, x.data(), y.data(), B);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> h(U, 0.0), c(U, 0.0);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> z(4 * U);
      for (int64_t j = 0; j < 4 * U; ++j) {
        double s = bias[j] + (j >= U && j < 2 * U ? 1.0 : 0.0);  // unit forget bias
        for (int64_t k = 0; k < F; ++k) s += x[(b * T + t) * F + k] * W[k * 4 * U + j];
        for (int64_t k = 0; k < U; ++k) s += h[k] * R[k * 4 * U + j];
        z[j] = s;
      }
      for (int64_t u = 0; u < U; ++u) {
        c[u] = Sigmoid(z[U + u]) * c[u] + Sigmoid(z[u]) * std::tanh(z[2 * U + u]);
        h[u] = Sigmoid(z[3 * U + u]) * std::tanh(c[u]);
        EXPECT_NEAR(y[(b * T + t) * U + u], h[u], 1e-5) << "b=" << b << " t=" << t << " u=" << u;
      }
    }
  }
}

TEST(SequenceLayerForward, GruMatchesNaiveReferenceAndLastStep) {
  Fixture f;
  const int64_t T = 4, F = 3, U = 2, B = 2;
  auto seq = MakeGru(U, true), last = MakeGru(U, false);
  BuildOrDie(*seq, {T, F});
  BuildOrDie(*last, {T, F});
  BoundParams p(*seq, *f.backend, 21);
  BoundParams q(*last, *f.backend, 21);  // same values
  const auto &W = p.values[0], &R = p.values[1], &bias = p.values[2];
  std::vector<float> x = RandomVector(B * T * F, 22), y(B * T * U), y_last(B * U);
  seq->Forward(f.ctx, x.data(), y.data(), B);
  last->Forward(f.ctx, x.data(), y_last.data(), B);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> h(U, 0.0);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> xi(3 * U), hr(3 * U);
      for (int64_t j = 0; j < 3 * U; ++j) {
        xi[j] = bias[j];
        hr[j] = bias[3 * U + j];
        for (int64_t k = 0; k < F; ++k) xi[j] += x[(b * T + t) * F + k] * W[k * 3 * U + j];
        for (int64_t k = 0; k < U; ++k) hr[j] += h[k] * R[k * 3 * U + j];
      }
      std::vector<double> hn(U);
      for (int64_t u = 0; u < U; ++u) {
        const double z = Sigmoid(xi[u] + hr[u]), r = Sigmoid(xi[U + u] + hr[U + u]);
        const double hh = std::tanh(xi[2 * U + u] + r * hr[2 * U + u]);
        hn[u] = z * h[u] + (1 - z) * hh;
        EXPECT_NEAR(y[(b * T + t) * U + u], hn[u], 1e-5) << "b=" << b << " t=" << t;
      }
      h = hn;
    }
    for (int64_t u = 0; u < U; ++u) EXPECT_EQ(y_last[b * U + u], y[(b * T + T - 1) * U + u]);
  }
}

TEST(SequenceLayerForward, AttentionMatchesNaiveReference) {
  Fixture f;
  const int64_t T = 5, D = 6, H = 3, d = 2, B = 2;
  auto layer = MakeCausalSelfAttention(H, D);
  BuildOrDie(*layer, {T, D});
  BoundParams p(*layer, *f.backend, 31);
  const auto &Wqkv = p.values[0], &bqkv = p.values[1], &Wo = p.values[2], &bo = p.values[3];
  std::vector<float> x = RandomVector(B * T * D, 32), y(B * T * D);
  layer->Forward(f.ctx, x.data(), y.data(), B);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> qkv(T * 3 * D), o(T * D, 0.0);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < 3 * D; ++j) {
        double s = bqkv[j];
        for (int64_t k = 0; k < D; ++k) s += x[(b * T + t) * D + k] * Wqkv[k * 3 * D + j];
        qkv[t * 3 * D + j] = s;
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> w(i + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t k = 0; k < d; ++k) s += qkv[i * 3 * D + h * d + k] * qkv[j * 3 * D + D + h * d + k];
          w[j] = s / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, w[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += (w[j] = std::exp(w[j] - mx));
        for (int64_t k = 0; k < d; ++k) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j) acc += w[j] / sum * qkv[j * 3 * D + 2 * D + h * d + k];
          o[i * D + h * d + k] = acc;
        }
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < D; ++j) {
        double s = bo[j];
        for (int64_t k = 0; k < D; ++k) s += o[t * D + k] * Wo[k * D + j];
        EXPECT_NEAR(y[(b * T + t) * D + j], s, 1e-5) << "b=" << b << " t=" << t << " j=" << j;
      }
    }
  }
}

TEST(SequenceLayerForward, LayerNormRowsHaveZeroMeanUnitVariance) {
  Fixture f;
  auto layer = MakeLayerNorm(1e-5f);
  BuildOrDie(*layer, {2, 8});
  BoundParams p(*layer, *f.backend, 41, 0.0f);  // gamma = beta = 0: scale 1, shift 0
  std::vector<float> x = RandomVector(32, 42, -3.0f, 5.0f), y(32);
  layer->Forward(f.ctx, x.data(), y.data(), 2);
  for (int r = 0; r < 4; ++r) {
    double m = 0, v = 0;
    for (int c = 0; c < 8; ++c) m += y[r * 8 + c] / 8.0;
    for (int c = 0; c < 8; ++c) v += (y[r * 8 + c] - m) * (y[r * 8 + c] - m) / 8.0;
    EXPECT_NEAR(m, 0.0, 1e-6);
    EXPECT_NEAR(v, 1.0, 1e-4);  // eps = 1e-5 against variances of order 1
  }
}

TEST(SequenceLayerForward, EmbeddingGathersRowsAndPositionalAddsThem) {
  Fixture f;
  auto emb = MakeEmbedding(4, 2);
  BuildOrDie(*emb, {3});
  BoundParams p(*emb, *f.backend, 51);
  std::vector<float> ids = {3, 0, 3}, y(6);
  emb->Forward(f.ctx, ids.data(), y.data(), 1);
  for (int t = 0; t < 3; ++t) {
    for (int c = 0; c < 2; ++c) EXPECT_EQ(y[t * 2 + c], p.values[0][static_cast<size_t>(ids[t]) * 2 + c]);
  }
  auto pos = MakePositionalEmbedding(5, 2);
  BuildOrDie(*pos, {3, 2});
  BoundParams q(*pos, *f.backend, 52);
  std::vector<float> z(12);
  std::vector<float> x2 = {y[0], y[1], y[2], y[3], y[4], y[5], y[0], y[1], y[2], y[3], y[4], y[5]};
  pos->Forward(f.ctx, x2.data(), z.data(), 2);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(z[i], x2[i] + q.values[0][i % 6]);
}

// Output at position t must not depend on inputs at positions > t.
TEST(SequenceLayerForward, AttentionAndBlockAreCausal) {
  Fixture f;
  const int64_t T = 6, D = 4;
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(MakeCausalSelfAttention(2, D));
  layers.push_back(MakeTransformerBlock(2, D, 8));
  for (auto& layer : layers) {
    BuildOrDie(*layer, {T, D});
    BoundParams p(*layer, *f.backend, 61);
    std::vector<float> x = RandomVector(T * D, 62), y0(T * D), y1(T * D);
    layer->Forward(f.ctx, x.data(), y0.data(), 1);
    for (int64_t t0 = 0; t0 < T; ++t0) {
      std::vector<float> xp = x;
      // Not a uniform shift, which LayerNorm would cancel.
      for (int64_t c = 0; c < D; ++c) xp[t0 * D + c] += 0.25f * static_cast<float>(c + 1);
      layer->Forward(f.ctx, xp.data(), y1.data(), 1);
      for (int64_t t = 0; t < T; ++t) {
        bool changed = false;
        for (int64_t c = 0; c < D; ++c) changed |= y0[t * D + c] != y1[t * D + c];
        EXPECT_EQ(changed, t >= t0) << layer->Kind() << ": perturbing position " << t0
                                    << (t < t0 ? " changed" : " did not change") << " output " << t;
      }
    }
  }
}

// ---- shapes, names, errors ----

TEST(SequenceLayerBuild, ShapesAndParameterNames) {
  auto lstm = MakeLstm(8, false);
  EXPECT_EQ(*lstm->Build({28, 28}), (Shape{8}));
  EXPECT_EQ(lstm->ParamSpecs()[1].shape, (Shape{8, 32}));
  auto gru = MakeGru(8, true);
  EXPECT_EQ(*gru->Build({5, 3}), (Shape{5, 8}));
  EXPECT_EQ(gru->ParamSpecs()[2].shape, (Shape{2, 24}));
  auto emb = MakeEmbedding(10, 4);
  EXPECT_EQ(*emb->Build({7}), (Shape{7, 4}));
  auto td = MakeTimeDistributedDense(10);
  EXPECT_EQ(*td->Build({7, 4}), (Shape{7, 10}));
  auto block = MakeTransformerBlock(2, 4, 16);
  ASSERT_TRUE(block->Build({7, 4}).ok());
  std::vector<std::string> names;
  for (const ParamSpec& s : block->ParamSpecs()) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"ln1.gamma", "ln1.beta", "attn.qkv_kernel", "attn.qkv_bias",
                                             "attn.out_kernel", "attn.out_bias", "ln2.gamma", "ln2.beta",
                                             "mlp1.kernel", "mlp1.bias", "mlp2.kernel", "mlp2.bias"}));
}

TEST(SequenceLayerBuild, ImpossibleShapesAreErrors) {
  EXPECT_FALSE(MakeLstm(4, false)->Build({12}).ok()) << "needs (T, F)";
  EXPECT_FALSE(MakeGru(0, false)->Build({3, 2}).ok());
  EXPECT_FALSE(MakeEmbedding(5, 3)->Build({4, 2}).ok());
  auto pos = MakePositionalEmbedding(4, 3)->Build({5, 3});
  ASSERT_FALSE(pos.ok());
  EXPECT_NE(pos.status().message().find("max_len"), std::string::npos) << pos.status().message();
  auto attn = MakeCausalSelfAttention(3, 8)->Build({4, 8});
  ASSERT_FALSE(attn.ok());
  EXPECT_NE(attn.status().message().find("heads"), std::string::npos) << attn.status().message();
  EXPECT_FALSE(MakeCausalSelfAttention(2, 8)->Build({4, 6}).ok()) << "width mismatch";
  EXPECT_FALSE(MakeTransformerBlock(2, 8, 16)->Build({4, 6}).ok());
}

// ---- per-time-step loss ----

TEST(SequenceLoss, EqualsFlatCrossEntropyOverAllPositions) {
  Fixture f;
  const int64_t B = 2, T = 3, V = 4;
  std::vector<float> logits = RandomVector(B * T * V, 71, -2.0f, 2.0f), d1(B * T * V), d2(B * T * V);
  std::vector<int32_t> labels = {0, 3, 1, 2, 2, 0};
  Tensor out = Tensor::View(logits.data(), {B, T, V}, DType::kFloat32, f.backend->device());
  Tensor lab = Tensor::View(labels.data(), {B, T}, DType::kInt32, f.backend->device());
  Tensor dout = Tensor::View(d1.data(), {B, T, V}, DType::kFloat32, f.backend->device());
  LossValue v = SequenceSoftmaxCrossEntropy(*f.backend, out, lab, 1.0f / (B * T), &dout);
  double expect = 0;
  for (int64_t r = 0; r < B * T; ++r) {
    double mx = -1e30, s = 0;
    for (int64_t c = 0; c < V; ++c) mx = std::max<double>(mx, logits[r * V + c]);
    for (int64_t c = 0; c < V; ++c) s += std::exp(logits[r * V + c] - mx);
    expect += mx + std::log(s) - logits[r * V + labels[r]];
  }
  EXPECT_NEAR(v.sum, expect, 1e-5);
  EXPECT_TRUE(ValidateSequenceLoss({T, V}).ok());
  EXPECT_FALSE(ValidateSequenceLoss({V}).ok());
  EXPECT_FALSE(ValidateSequenceLoss({T, 1}).ok());
}

// ---- end to end: tiny language models learn a periodic string ----

double TrainTinyLm(std::vector<std::unique_ptr<Layer>> layers, int steps) {
  auto be = CreateCpuBackend();
  const int64_t T = 8, B = 4, V = 5;
  auto model_or = Model::Create(be.get(), {T}, std::move(layers));
  EXPECT_TRUE(model_or.ok()) << model_or.status().ToString();
  auto model = std::move(model_or).value();
  EXPECT_TRUE(ValidateSequenceLoss(model->output_shape()).ok());
  model->InitializeParameters(3);
  OptimizerConfig oc;
  auto opt = Optimizer::Create(be.get(), oc, 0, model->param_count());
  EXPECT_TRUE(opt.ok());
  // Text "0123401234...": the next token is (token + 1) mod 5.
  std::vector<float> x(B * T);
  std::vector<int32_t> y(B * T);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      x[b * T + t] = static_cast<float>((b + t) % V);
      y[b * T + t] = static_cast<int32_t>((b + t + 1) % V);
    }
  }
  StepContext ctx;
  ctx.backend = be.get();
  ctx.training = true;
  Tensor xt = Tensor::View(x.data(), {B, T}, DType::kFloat32, be->device());
  Tensor yt = Tensor::View(y.data(), {B, T}, DType::kInt32, be->device());
  Tensor dout = Tensor::Zeros(*be, {B, T, V}, DType::kFloat32);
  double loss = 0;
  for (int s = 0; s < steps; ++s) {
    Tensor out = model->Forward(ctx, xt);
    loss = SequenceSoftmaxCrossEntropy(*be, out, yt, 1.0f / (B * T), &dout).sum / (B * T);
    model->Backward(ctx, dout);
    (*opt)->Step(0.01f, model->params().data<float>(), model->grads().data<float>());
  }
  return loss;
}

TEST(SequenceModel, TinyTransformerLmLearns) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(MakeEmbedding(5, 8));
  layers.push_back(MakePositionalEmbedding(8, 8));
  layers.push_back(MakeTransformerBlock(2, 8, 16));
  layers.push_back(MakeLayerNorm());
  layers.push_back(MakeTimeDistributedDense(5));
  EXPECT_LT(TrainTinyLm(std::move(layers), 150), 0.1) << "ln 5 = 1.61 at chance";
}

TEST(SequenceModel, TinyLstmAndGruLmsLearn) {
  for (bool gru : {false, true}) {
    std::vector<std::unique_ptr<Layer>> layers;
    layers.push_back(MakeEmbedding(5, 8));
    layers.push_back(gru ? MakeGru(16, true) : MakeLstm(16, true));
    layers.push_back(MakeTimeDistributedDense(5));
    EXPECT_LT(TrainTinyLm(std::move(layers), 150), 0.1) << (gru ? "gru" : "lstm");
  }
}

}  // namespace
}  // namespace lockstep
