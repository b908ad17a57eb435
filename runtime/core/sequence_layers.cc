// Embedding, positional embedding, LayerNorm and the per-time-step Dense.
// Recurrent layers are in recurrent_layers.cc, attention in attention_layers.cc.
#include "runtime/core/sequence_layers.h"

#include <sstream>

namespace lockstep {
namespace {

// Glorot-uniform fans whose limit sqrt(6 / (fan_in + fan_out)) is 0.05: Keras'
// Embedding default RandomUniform(-0.05, 0.05) through our Glorot initialiser.
constexpr int64_t kUniform005Fan = 1200;

class EmbeddingLayer final : public Layer {
 public:
  EmbeddingLayer(int64_t vocab, int64_t dim) : vocab_(vocab), dim_(dim) {}
  std::string Kind() const override { return "embedding"; }
  bool NeedsExactInput() const override { return true; }  // token ids above 256 are not bf16 values
  std::string Describe() const override {
    return "vocab=" + std::to_string(vocab_) + " dim=" + std::to_string(dim_);
  }
  Result<Shape> Build(const Shape& in) override {
    if (in.size() != 1) {
      return InvalidArgumentError("embedding expects a (T) sequence of token ids, got " +
                                  ShapeToString(in));
    }
    if (vocab_ <= 0 || dim_ <= 0) {
      return InvalidArgumentError("embedding needs vocab > 0 and dim > 0 (" + Describe() + ")");
    }
    input_shape_ = in;
    output_shape_ = {in[0], dim_};
    return output_shape_;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    return {{"embeddings", {vocab_, dim_}, ParamInit::kGlorotUniform, kUniform005Fan, kUniform005Fan}};
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    table_ = p[0].data<float>();
    dtable_ = g[0].data<float>();
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    ctx.backend->EmbeddingForward(x, batch * input_shape_[0], table_, vocab_, dim_, y);
  }
  void Backward(const StepContext& ctx, const float* x, const float*, const float* dy, float* dx,
                int64_t batch) override {
    const int64_t n = batch * input_shape_[0];
    ctx.backend->EmbeddingBackward(x, n, dy, vocab_, dim_, ctx.grad_beta, dtable_);
    if (dx) ctx.backend->ZeroBytes(dx, sizeof(float) * static_cast<size_t>(n));
  }
  double ForwardFlops() const override { return 0; }
  double WeightGradFlops() const override { return static_cast<double>(input_shape_[0]) * dim_; }
  double InputGradFlops() const override { return 0; }

 private:
  int64_t vocab_, dim_;
  float *table_ = nullptr, *dtable_ = nullptr;
};

class PositionalEmbeddingLayer final : public Layer {
 public:
  PositionalEmbeddingLayer(int64_t max_len, int64_t dim) : max_len_(max_len), dim_(dim) {}
  std::string Kind() const override { return "positional_embedding"; }
  std::string Describe() const override {
    return "max_len=" + std::to_string(max_len_) + " dim=" + std::to_string(dim_);
  }
  Result<Shape> Build(const Shape& in) override {
    if (in.size() != 2 || in[1] != dim_) {
      return InvalidArgumentError("positional_embedding (" + Describe() +
                                  ") expects a (T, " + std::to_string(dim_) + ") input, got " +
                                  ShapeToString(in));
    }
    if (in[0] > max_len_) {
      return InvalidArgumentError("positional_embedding: sequence length " + std::to_string(in[0]) +
                                  " exceeds max_len " + std::to_string(max_len_));
    }
    input_shape_ = output_shape_ = in;
    return in;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    return {{"embeddings", {max_len_, dim_}, ParamInit::kGlorotUniform, max_len_, dim_}};
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    table_ = p[0].data<float>();
    dtable_ = g[0].data<float>();
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    const int64_t row = input_shape_[0] * dim_;
    ctx.backend->CopyBytes(y, x, sizeof(float) * static_cast<size_t>(batch * row));
    ctx.backend->BiasAdd(y, table_, batch, row);  // positions 0..T-1 of the table
  }
  void Backward(const StepContext& ctx, const float*, const float*, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t row = input_shape_[0] * dim_;
    be.BiasBackward(dy, batch, row, ctx.grad_beta, dtable_);
    if (ctx.grad_beta == 0.0f && max_len_ * dim_ > row) {
      be.ZeroBytes(dtable_ + row, sizeof(float) * static_cast<size_t>(max_len_ * dim_ - row));
    }
    if (dx) be.CopyBytes(dx, dy, sizeof(float) * static_cast<size_t>(batch * row));
  }
  double ForwardFlops() const override { return static_cast<double>(input_shape_[0]) * dim_; }
  double WeightGradFlops() const override { return ForwardFlops(); }
  double InputGradFlops() const override { return 0; }

 private:
  int64_t max_len_, dim_;
  float *table_ = nullptr, *dtable_ = nullptr;
};

class LayerNormLayer final : public Layer {
 public:
  explicit LayerNormLayer(float eps) : eps_(eps) {}
  std::string Kind() const override { return "layer_norm"; }
  std::string Describe() const override {
    std::ostringstream out;
    out << "eps=" << eps_;
    return out.str();
  }
  Result<Shape> Build(const Shape& in) override {
    if (in.empty()) return InvalidArgumentError("layer_norm needs an input with at least one dim");
    if (!(eps_ > 0.0f)) return InvalidArgumentError("layer_norm eps must be > 0 (" + Describe() + ")");
    input_shape_ = output_shape_ = in;
    cols_ = in.back();
    rows_per_sample_ = NumElements(in) / cols_;
    return in;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    return {{"gamma", {cols_}, ParamInit::kZeros, 1, 1}, {"beta", {cols_}, ParamInit::kZeros, 1, 1}};
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    gamma_ = p[0].data<float>();
    beta_ = p[1].data<float>();
    dgamma_ = g[0].data<float>();
    dbeta_ = g[1].data<float>();
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    const int64_t rows = batch * rows_per_sample_;
    float* stats = stats_.Floats(*ctx.backend, 2 * rows);
    ctx.backend->LayerNormForward(x, gamma_, beta_, rows, cols_, eps_, y, stats, stats + rows);
  }
  void Backward(const StepContext& ctx, const float* x, const float*, const float* dy, float* dx,
                int64_t batch) override {
    const int64_t rows = batch * rows_per_sample_;
    float* stats = stats_.Floats(*ctx.backend, 2 * rows);
    ctx.backend->LayerNormBackward(x, gamma_, stats, stats + rows, dy, rows, cols_, ctx.grad_beta,
                                   dx, dgamma_, dbeta_);
  }
  double ForwardFlops() const override { return 8.0 * NumElements(input_shape_); }
  double WeightGradFlops() const override { return 4.0 * NumElements(input_shape_); }

 private:
  float eps_;
  int64_t cols_ = 0, rows_per_sample_ = 0;
  Scratch stats_;  // mean (rows), then rstd (rows)
  float *gamma_ = nullptr, *beta_ = nullptr, *dgamma_ = nullptr, *dbeta_ = nullptr;
};

// A Dense built on the flat (in) shape and run on batch * positions rows.
class TimeDistributedDenseLayer final : public Layer {
 public:
  TimeDistributedDenseLayer(int64_t units, bool use_bias, Activation act)
      : units_(units), dense_(MakeDense(units, use_bias, ParamInit::kGlorotUniform, act)) {}
  std::string Kind() const override { return "time_distributed_dense"; }
  std::string Describe() const override { return dense_->Describe(); }
  Result<Shape> Build(const Shape& in) override {
    if (in.empty()) return InvalidArgumentError("time_distributed_dense needs a (..., features) input");
    auto out = dense_->Build({in.back()});
    if (!out.ok()) return out.status();
    input_shape_ = in;
    output_shape_ = in;
    output_shape_.back() = units_;
    positions_ = NumElements(in) / in.back();
    return output_shape_;
  }
  std::vector<ParamSpec> ParamSpecs() const override { return dense_->ParamSpecs(); }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    dense_->BindParams(p, g);
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    dense_->Forward(ctx, x, y, batch * positions_);
  }
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy, float* dx,
                int64_t batch) override {
    dense_->Backward(ctx, x, y, dy, dx, batch * positions_);
  }
  double ForwardFlops() const override { return positions_ * dense_->ForwardFlops(); }
  double WeightGradFlops() const override { return positions_ * dense_->WeightGradFlops(); }
  double InputGradFlops() const override { return positions_ * dense_->InputGradFlops(); }

 private:
  int64_t units_;
  std::unique_ptr<Layer> dense_;
  int64_t positions_ = 0;
};

}  // namespace

std::unique_ptr<Layer> MakeEmbedding(int64_t vocab, int64_t dim) {
  return std::make_unique<EmbeddingLayer>(vocab, dim);
}
std::unique_ptr<Layer> MakePositionalEmbedding(int64_t max_len, int64_t dim) {
  return std::make_unique<PositionalEmbeddingLayer>(max_len, dim);
}
std::unique_ptr<Layer> MakeLayerNorm(float eps) { return std::make_unique<LayerNormLayer>(eps); }
std::unique_ptr<Layer> MakeTimeDistributedDense(int64_t units, bool use_bias, Activation act) {
  LS_CHECK(CanFuseActivation(act)) << "time_distributed_dense cannot fuse " << ActivationName(act);
  return std::make_unique<TimeDistributedDenseLayer>(units, use_bias, act);
}

}  // namespace lockstep
