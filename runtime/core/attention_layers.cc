// Causal multi-head self-attention and the pre-LayerNorm transformer block.
// The block is composed of other layers (LayerNorm, attention, Dense, GELU)
// through the Layer interface and owns its two residual connections; its
// parameters are those of its parts, in order, bound to the model's arenas.
#include <sstream>

#include "runtime/core/sequence_layers.h"

namespace lockstep {
namespace {

float* Floats(Scratch& s, Backend& be, int64_t n) {
  return static_cast<float*>(s.Get(be, sizeof(float) * static_cast<size_t>(n)));
}

Status CheckSequenceInput(const std::string& kind, const Shape& in, int64_t dim) {
  if (in.size() != 2 || in[1] != dim) {
    return InvalidArgumentError(kind + " expects a (T, " + std::to_string(dim) + ") input, got " +
                                ShapeToString(in));
  }
  return Status::Ok();
}

class CausalSelfAttentionLayer final : public Layer {
 public:
  CausalSelfAttentionLayer(int64_t heads, int64_t dim) : heads_(heads), dim_(dim) {}
  std::string Kind() const override { return "causal_self_attention"; }
  std::string Describe() const override {
    return "heads=" + std::to_string(heads_) + " dim=" + std::to_string(dim_);
  }
  Result<Shape> Build(const Shape& in) override {
    if (heads_ <= 0 || dim_ <= 0 || dim_ % heads_ != 0) {
      return InvalidArgumentError("causal_self_attention needs heads > 0 dividing dim (" + Describe() + ")");
    }
    LS_RETURN_IF_ERROR(CheckSequenceInput(Kind(), in, dim_));
    input_shape_ = output_shape_ = in;
    t_ = in[0];
    return in;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    // Fans of three separate (dim, dim) projections, as Keras MultiHeadAttention.
    return {{"qkv_kernel", {dim_, 3 * dim_}, ParamInit::kGlorotUniform, dim_, dim_},
            {"qkv_bias", {3 * dim_}, ParamInit::kZeros, 1, 1},
            {"out_kernel", {dim_, dim_}, ParamInit::kGlorotUniform, dim_, dim_},
            {"out_bias", {dim_}, ParamInit::kZeros, 1, 1}};
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    wqkv_ = p[0].data<float>();
    bqkv_ = p[1].data<float>();
    wo_ = p[2].data<float>();
    bo_ = p[3].data<float>();
    dwqkv_ = g[0].data<float>();
    dbqkv_ = g[1].data<float>();
    dwo_ = g[2].data<float>();
    dbo_ = g[3].data<float>();
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_;
    const AttentionShape s = ShapeFor(batch);
    float* qkv = Floats(qkv_, be, rows * 3 * dim_);
    float* probs = Floats(probs_, be, batch * heads_ * t_ * t_);
    float* attn = Floats(attn_, be, rows * dim_);
    be.Gemm(false, false, rows, 3 * dim_, dim_, 1.0f, x, dim_, wqkv_, 3 * dim_, 0.0f, qkv, 3 * dim_);
    be.BiasAdd(qkv, bqkv_, rows, 3 * dim_);
    be.CausalAttentionForward(s, qkv, probs, attn);
    be.Gemm(false, false, rows, dim_, dim_, 1.0f, attn, dim_, wo_, dim_, 0.0f, y, dim_);
    be.BiasAdd(y, bo_, rows, dim_);
  }
  void Backward(const StepContext& ctx, const float* x, const float*, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_;
    const AttentionShape s = ShapeFor(batch);
    const float* qkv = Floats(qkv_, be, rows * 3 * dim_);
    const float* probs = Floats(probs_, be, batch * heads_ * t_ * t_);
    const float* attn = Floats(attn_, be, rows * dim_);
    float* dattn = Floats(dattn_, be, rows * dim_);
    float* dqkv = Floats(dqkv_, be, rows * 3 * dim_);
    void* ws = workspace_.Get(be, be.CausalAttentionWorkspaceBytes(s));
    be.Gemm(true, false, dim_, dim_, rows, 1.0f, attn, dim_, dy, dim_, ctx.grad_beta, dwo_, dim_);
    be.BiasBackward(dy, rows, dim_, ctx.grad_beta, dbo_);
    be.Gemm(false, true, rows, dim_, dim_, 1.0f, dy, dim_, wo_, dim_, 0.0f, dattn, dim_);
    be.CausalAttentionBackward(s, qkv, probs, dattn, dqkv, ws);
    be.Gemm(true, false, dim_, 3 * dim_, rows, 1.0f, x, dim_, dqkv, 3 * dim_, ctx.grad_beta, dwqkv_, 3 * dim_);
    be.BiasBackward(dqkv, rows, 3 * dim_, ctx.grad_beta, dbqkv_);
    if (dx) be.Gemm(false, true, rows, dim_, 3 * dim_, 1.0f, dqkv, 3 * dim_, wqkv_, 3 * dim_, 0.0f, dx, dim_);
  }
  double ForwardFlops() const override {
    // Projections, then Q K^T and P V over the full T x T (the mask is not exploited).
    return 2.0 * t_ * dim_ * 4 * dim_ + 4.0 * t_ * t_ * dim_;
  }
  double WeightGradFlops() const override { return 2.0 * t_ * dim_ * 4 * dim_; }

 private:
  AttentionShape ShapeFor(int64_t batch) const {
    AttentionShape s;
    s.batch = batch;
    s.seq = t_;
    s.heads = heads_;
    s.head_dim = dim_ / heads_;
    return s;
  }
  int64_t heads_, dim_, t_ = 0;
  Scratch qkv_, probs_, attn_;       // forward, kept for backward
  Scratch dattn_, dqkv_, workspace_;
  float *wqkv_ = nullptr, *bqkv_ = nullptr, *wo_ = nullptr, *bo_ = nullptr;
  float *dwqkv_ = nullptr, *dbqkv_ = nullptr, *dwo_ = nullptr, *dbo_ = nullptr;
};

class TransformerBlockLayer final : public Layer {
 public:
  TransformerBlockLayer(int64_t heads, int64_t dim, int64_t mlp_hidden)
      : heads_(heads), dim_(dim), hidden_(mlp_hidden) {
    parts_.push_back({"ln1", MakeLayerNorm(1e-5f)});
    parts_.push_back({"attn", MakeCausalSelfAttention(heads, dim)});
    parts_.push_back({"ln2", MakeLayerNorm(1e-5f)});
    parts_.push_back({"mlp1", MakeDense(mlp_hidden, true)});
    parts_.push_back({"gelu", MakeActivation(Activation::kGelu)});
    parts_.push_back({"mlp2", MakeDense(dim, true)});
  }
  std::string Kind() const override { return "transformer_block"; }
  std::string Describe() const override {
    return "heads=" + std::to_string(heads_) + " dim=" + std::to_string(dim_) +
           " mlp_hidden=" + std::to_string(hidden_);
  }
  Result<Shape> Build(const Shape& in) override {
    if (hidden_ <= 0) return InvalidArgumentError("transformer_block mlp_hidden must be > 0 (" + Describe() + ")");
    LS_RETURN_IF_ERROR(CheckSequenceInput(Kind(), in, dim_));
    t_ = in[0];
    // LayerNorm and attention see (T, dim); the MLP parts run per position on T-times
    // the batch, so they are built on flat rows.
    const Shape shapes[] = {in, in, in, {dim_}, {hidden_}, {hidden_}};
    for (size_t i = 0; i < parts_.size(); ++i) {
      auto out = parts_[i].layer->Build(shapes[i]);
      if (!out.ok()) return out.status().WithContext("transformer_block " + parts_[i].name);
    }
    input_shape_ = output_shape_ = in;
    return in;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    std::vector<ParamSpec> specs;
    for (const Part& part : parts_) {
      for (ParamSpec spec : part.layer->ParamSpecs()) {
        spec.name = part.name + "." + spec.name;
        specs.push_back(spec);
      }
    }
    return specs;
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    size_t next = 0;
    for (Part& part : parts_) {
      const size_t n = part.layer->ParamSpecs().size();
      LS_CHECK_LE(next + n, p.size()) << "transformer_block: too few parameter views";
      part.layer->BindParams(std::vector<Tensor>(p.begin() + next, p.begin() + next + n),
                             std::vector<Tensor>(g.begin() + next, g.begin() + next + n));
      next += n;
    }
    LS_CHECK_EQ(next, p.size()) << "transformer_block: parameter view count";
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_, n = rows * dim_;
    float* a0 = Floats(a0_, be, n);  // LN1(x)
    float* a1 = Floats(a1_, be, n);  // Attn(a0)
    float* h = Floats(h_, be, n);    // x + a1
    float* a2 = Floats(a2_, be, n);  // LN2(h)
    float* a3 = Floats(a3_, be, rows * hidden_);  // Dense1(a2)
    float* a4 = Floats(a4_, be, rows * hidden_);  // GELU(a3)
    At(0).Forward(ctx, x, a0, batch);
    At(1).Forward(ctx, a0, a1, batch);
    be.CopyBytes(h, x, sizeof(float) * static_cast<size_t>(n));
    be.Axpy(1.0f, a1, h, n);
    At(2).Forward(ctx, h, a2, batch);
    At(3).Forward(ctx, a2, a3, rows);
    At(4).Forward(ctx, a3, a4, rows);
    At(5).Forward(ctx, a4, y, rows);
    be.Axpy(1.0f, h, y, n);
  }
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_, n = rows * dim_;
    const float* a0 = Floats(a0_, be, n);
    const float* a1 = Floats(a1_, be, n);
    const float* h = Floats(h_, be, n);
    const float* a2 = Floats(a2_, be, n);
    const float* a3 = Floats(a3_, be, rows * hidden_);
    const float* a4 = Floats(a4_, be, rows * hidden_);
    float* dh = Floats(dh_, be, n);
    float* dwide = Floats(dwide_, be, rows * hidden_);
    float* dnarrow = Floats(dnarrow_, be, n);
    float* dnarrow2 = Floats(dnarrow2_, be, n);
    // Second residual: dh = dy + d(LN2 path). mlp2 has no activation, so its
    // output argument is unused; the block output stands in for it.
    At(5).Backward(ctx, a4, y, dy, dwide, rows);
    At(4).Backward(ctx, a3, a4, dwide, dwide, rows);
    At(3).Backward(ctx, a2, a3, dwide, dnarrow, rows);
    At(2).Backward(ctx, h, a2, dnarrow, dh, batch);
    be.Axpy(1.0f, dy, dh, n);
    // First residual: dx = dh + d(LN1 path).
    At(1).Backward(ctx, a0, a1, dh, dnarrow, batch);
    At(0).Backward(ctx, x, a0, dnarrow, dx ? dnarrow2 : nullptr, batch);
    if (dx) {
      be.CopyBytes(dx, dh, sizeof(float) * static_cast<size_t>(n));
      be.Axpy(1.0f, dnarrow2, dx, n);
    }
  }
  double ForwardFlops() const override {
    return parts_[0].layer->ForwardFlops() + parts_[1].layer->ForwardFlops() +
           parts_[2].layer->ForwardFlops() +
           t_ * (parts_[3].layer->ForwardFlops() + parts_[5].layer->ForwardFlops()) + 2.0 * t_ * dim_;
  }
  double WeightGradFlops() const override {
    return parts_[0].layer->WeightGradFlops() + parts_[1].layer->WeightGradFlops() +
           parts_[2].layer->WeightGradFlops() +
           t_ * (parts_[3].layer->WeightGradFlops() + parts_[5].layer->WeightGradFlops());
  }

 private:
  struct Part {
    std::string name;
    std::unique_ptr<Layer> layer;
  };
  Layer& At(size_t i) { return *parts_[i].layer; }

  int64_t heads_, dim_, hidden_, t_ = 0;
  std::vector<Part> parts_;  // ln1, attn, ln2, mlp1, gelu, mlp2
  Scratch a0_, a1_, h_, a2_, a3_, a4_;  // forward activations, kept for backward
  Scratch dh_, dwide_, dnarrow_, dnarrow2_;
};

}  // namespace

std::unique_ptr<Layer> MakeCausalSelfAttention(int64_t heads, int64_t dim) {
  return std::make_unique<CausalSelfAttentionLayer>(heads, dim);
}
std::unique_ptr<Layer> MakeTransformerBlock(int64_t heads, int64_t dim, int64_t mlp_hidden) {
  return std::make_unique<TransformerBlockLayer>(heads, dim, mlp_hidden);
}

}  // namespace lockstep
