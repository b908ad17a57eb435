// bf16 activation storage (ActivationStorage::kBf16, training.precision: BF16) on the
// CPU backend. The reference is the same model kept in fp32 whose layers round their
// own outputs to bf16 (kernels::cpu::RoundToBf16, tested against an independent
// reference in tests/kernels/bf16_test.cc): every layer then sees rounded inputs and
// rounded outputs in both passes, which is what bf16 storage promises. Outputs,
// parameter gradients and the input gradient must be bitwise equal, for dense, conv,
// pooling, dropout, recurrent, attention and embedding models; and the stored bytes
// must be what the layout says (half for every stored activation).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/cpu/bf16.h"
#include "runtime/core/model.h"
#include "runtime/core/sequence_layers.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep {
namespace {

using kernels::testing::TestRng;

// A layer whose output is rounded to bf16 in place after its forward.
class RoundedOutputLayer final : public Layer {
 public:
  explicit RoundedOutputLayer(std::unique_ptr<Layer> inner) : inner_(std::move(inner)) {}
  std::string Kind() const override { return inner_->Kind(); }
  std::string Describe() const override { return inner_->Describe(); }
  Result<Shape> Build(const Shape& in) override {
    inner_->set_index(index());  // dropout keys name the layer's position
    auto out = inner_->Build(in);
    if (out.ok()) {
      input_shape_ = in;
      output_shape_ = *out;
    }
    return out;
  }
  std::vector<ParamSpec> ParamSpecs() const override { return inner_->ParamSpecs(); }
  void SetActivationStorage(ActivationStorage storage) override { inner_->SetActivationStorage(storage); }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override { inner_->BindParams(p, g); }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    inner_->Forward(ctx, x, y, batch);
    kernels::cpu::RoundToBf16(y, y, batch * NumElements(output_shape_));
  }
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy, float* dx,
                int64_t batch) override {
    inner_->Backward(ctx, x, y, dy, dx, batch);
  }

 private:
  std::unique_ptr<Layer> inner_;
};

struct Case {
  const char* name;
  Shape input;          // per sample
  int64_t id_limit;     // > 0: inputs are integer ids in [0, id_limit)
  std::function<std::vector<std::unique_ptr<Layer>>()> layers;
};

template <typename... L>
std::vector<std::unique_ptr<Layer>> Layers(L... l) {
  std::vector<std::unique_ptr<Layer>> v;
  (v.push_back(std::move(l)), ...);
  return v;
}

std::vector<Case> Cases() {
  Conv2dOptions conv;
  conv.filters = 6;
  conv.activation = Activation::kRelu;
  return {
      {"mlp", {20}, 0,
       [] {
         return Layers(MakeDense(32, true, ParamInit::kGlorotUniform, Activation::kRelu), MakeDropout(0.25f),
                       MakeDense(16, true, ParamInit::kGlorotUniform, Activation::kTanh), MakeActivation(Activation::kGelu),
                       MakeDense(5, true));
       }},
      {"cnn", {10, 10, 2}, 0,
       [conv] {
         return Layers(MakeConv2d(conv), MakeMaxPool2d({}), MakeFlatten(),
                       MakeDense(7, true, ParamInit::kGlorotUniform, Activation::kSigmoid), MakeDense(4, true));
       }},
      {"lstm", {6, 5}, 0, [] { return Layers(MakeLstm(8, true), MakeGru(7, false), MakeDense(3, true)); }},
      // Ids above 256 are not bf16 values: the embedding's input must stay exact.
      {"transformer", {8}, 1000,
       [] {
         return Layers(MakeFlatten(), MakeEmbedding(1000, 16), MakePositionalEmbedding(8, 16),
                       MakeTransformerBlock(2, 16, 32), MakeLayerNorm(), MakeTimeDistributedDense(11));
       }},
      // Ids through two value-copying layers to the embedding: neither output is rounded.
      {"ids_through_copies", {8}, 1000,
       [] {
         return Layers(MakeFlatten(), MakeFlatten(), MakeEmbedding(1000, 16), MakeLayerNorm(),
                       MakeTimeDistributedDense(7));
       }},
  };
}

struct StepResult {
  std::vector<float> output, grads, dinput;
};

enum class Mode { kBf16Storage, kBf16Everywhere, kRoundingLayers, kFp32 };

StepResult TrainStep(const Case& c, Mode mode, int64_t batch, GemmPrecision gemm) {
  static std::unique_ptr<Backend> fp32_gemm = CreateCpuBackend(GemmPrecision::kFp32);
  static std::unique_ptr<Backend> bf16_gemm = CreateCpuBackend(GemmPrecision::kBf16Inputs);
  Backend* backend = gemm == GemmPrecision::kFp32 ? fp32_gemm.get() : bf16_gemm.get();
  std::vector<std::unique_ptr<Layer>> layers = c.layers();
  if (mode == Mode::kRoundingLayers) {
    // The reference: every output but the last, and but the ids an embedding reads,
    // rounded by its layer; what layers keep inside (a transformer block's activations)
    // is theirs to round, told directly, not through the model.
    for (auto& layer : layers) layer->SetActivationStorage(ActivationStorage::kBf16);
    for (size_t i = 0; i + 1 < layers.size(); ++i) {
      size_t next = i + 1;  // past layers that only copy values
      while (next + 1 < layers.size() && (layers[next]->Kind() == "flatten" || layers[next]->Kind() == "reshape")) {
        ++next;
      }
      if (layers[next]->Kind() != "embedding") layers[i] = std::make_unique<RoundedOutputLayer>(std::move(layers[i]));
    }
  }
  auto created = Model::Create(backend, c.input, std::move(layers));
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Model> model = std::move(*created);
  if (mode == Mode::kBf16Storage) model->set_activation_storage(ActivationStorage::kBf16);
  if (mode == Mode::kBf16Everywhere) model->set_activation_storage(ActivationStorage::kBf16Everywhere);
  model->InitializeParameters(7);

  TestRng rng(5);
  Shape in_shape = c.input;
  in_shape.insert(in_shape.begin(), batch);
  Tensor x = Tensor::Empty(*backend, in_shape, DType::kFloat32);
  std::vector<float> xs = rng.Vector(x.numel());
  if (c.id_limit > 0) {
    for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>((i * 389 + 257) % c.id_limit);
  }
  std::memcpy(x.raw(), xs.data(), x.nbytes());

  StepContext ctx;
  ctx.backend = backend;
  ctx.training = true;
  ctx.seed = 3;
  ctx.step = 1;
  Tensor y = model->Forward(ctx, x);
  StepResult run;
  run.output.assign(y.data<float>(), y.data<float>() + y.numel());
  Tensor dy = Tensor::Empty(*backend, y.shape(), DType::kFloat32);
  std::vector<float> dys = rng.Vector(dy.numel());
  std::memcpy(dy.raw(), dys.data(), dy.nbytes());
  Tensor dx = Tensor::Empty(*backend, x.shape(), DType::kFloat32);
  model->Backward(ctx, dy, nullptr, &dx);
  run.grads.assign(model->grads().data<float>(), model->grads().data<float>() + model->grads().numel());
  run.dinput.assign(dx.data<float>(), dx.data<float>() + dx.numel());
  return run;
}

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class ActivationStorageTest : public ::testing::TestWithParam<size_t> {};

TEST_P(ActivationStorageTest, Bf16StorageEqualsLayersRoundingTheirOutputs) {
  const Case c = Cases()[GetParam()];
  for (GemmPrecision gemm : {GemmPrecision::kFp32, GemmPrecision::kBf16Inputs}) {
    for (int64_t batch : {int64_t{3}, int64_t{1}}) {  // the second reuses larger buffers
      const bool bf16_gemm = gemm == GemmPrecision::kBf16Inputs;
      SCOPED_TRACE(::testing::Message() << c.name << " batch " << batch << (bf16_gemm ? " bf16" : " fp32") << " GEMM");
      const StepResult stored = TrainStep(c, Mode::kBf16Everywhere, batch, gemm);
      const StepResult reference = TrainStep(c, Mode::kRoundingLayers, batch, gemm);
      const StepResult chosen = TrainStep(c, Mode::kBf16Storage, batch, gemm);
      for (const StepResult* r : {&stored, &chosen}) {
        EXPECT_TRUE(BitwiseEqual(r->output, reference.output));
        EXPECT_TRUE(BitwiseEqual(r->grads, reference.grads));
        if (c.id_limit == 0) {
          EXPECT_TRUE(BitwiseEqual(r->dinput, reference.dinput));
        }
      }
      EXPECT_TRUE(BitwiseEqual(TrainStep(c, Mode::kBf16Everywhere, batch, gemm).grads, stored.grads)) << "repeatable";
      // The rounding is real: fp32 storage gives other gradients (with bf16 GEMMs an
      // activation that only feeds GEMMs is rounded by them anyway).
      if (!bf16_gemm) {
        EXPECT_FALSE(BitwiseEqual(TrainStep(c, Mode::kFp32, batch, gemm).grads, stored.grads));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ActivationStorageTest, ::testing::Range<size_t>(0, Cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(Cases()[info.param].name);
                         });

// The bytes held: stored activations at 2 bytes (bf16) or 4, the output at 4, the two
// gradient buffers, and two fp32 working buffers of the largest bf16-stored activation.
// kBf16 stores in bf16 only where that lowers the total, so it never exceeds kFp32.
size_t ActivationBytes(std::vector<std::unique_ptr<Layer>> layers, Shape input, ActivationStorage storage) {
  static std::unique_ptr<Backend> backend = CreateCpuBackend();
  auto model = Model::Create(backend.get(), input, std::move(layers));
  EXPECT_TRUE(model.ok());
  (*model)->set_activation_storage(storage);
  StepContext ctx;
  ctx.backend = backend.get();
  input.insert(input.begin(), 8);
  (*model)->Forward(ctx, Tensor::Zeros(*backend, input, DType::kFloat32));
  return (*model)->activation_bytes();
}

std::vector<std::unique_ptr<Layer>> DenseStack(std::vector<int64_t> widths) {
  std::vector<std::unique_ptr<Layer>> v;
  for (int64_t w : widths) v.push_back(MakeDense(w, true));
  return v;
}

TEST(ActivationStorageLayoutTest, BytesFollowTheLayout) {
  const size_t batch = 8, grads = 2 * batch * 100 * 4;  // the input (100) is the largest
  const std::vector<int64_t> widths = {64, 48, 32, 24, 10};
  const size_t fp32 = batch * (64 + 48 + 32 + 24 + 10) * 4 + grads;
  EXPECT_EQ(ActivationBytes(DenseStack(widths), {100}, ActivationStorage::kFp32), fp32);
  EXPECT_EQ(ActivationBytes(DenseStack(widths), {100}, ActivationStorage::kBf16Everywhere),
            batch * (64 + 48 + 32 + 24) * 2 + batch * 10 * 4 + grads + 2 * batch * 64 * 4);
  // Four outputs to store: the working buffers would cost more than bf16 saves.
  EXPECT_EQ(ActivationBytes(DenseStack(widths), {100}, ActivationStorage::kBf16), fp32);
  // Twelve of 64 and one of 96: bf16 for the twelve, the 96 stays fp32 (storing it too
  // would grow both working buffers by 32 elements to save 96 x 2 bytes: 256 > 192).
  std::vector<int64_t> deep(12, 64);
  deep.insert(deep.begin() + 5, 96);
  deep.push_back(10);
  EXPECT_EQ(ActivationBytes(DenseStack(deep), {100}, ActivationStorage::kBf16),
            batch * (12 * 64 * 2 + 96 * 4 + 10 * 4) + grads + 2 * batch * 64 * 4);
  EXPECT_LT(ActivationBytes(DenseStack(deep), {100}, ActivationStorage::kBf16),
            ActivationBytes(DenseStack(deep), {100}, ActivationStorage::kFp32));
}

}  // namespace
}  // namespace lockstep
