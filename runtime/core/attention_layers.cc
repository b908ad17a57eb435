// Causal multi-head self-attention and the pre-LayerNorm transformer block.
// The block is composed of other layers (LayerNorm, attention, Dense, GELU)
// through the Layer interface and owns its two residual connections; its
// parameters are those of its parts, in order, bound to the model's arenas.
#include <sstream>

#include "runtime/core/sequence_layers.h"
#include "runtime/core/transient_arena.h"

namespace lockstep {
namespace {

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
  void SetActivationStorage(ActivationStorage storage) override {
    for (SavedActivation* a : {&qkv_, &probs_, &attn_}) a->set_bf16(storage != ActivationStorage::kFp32);
  }
  // bf16: qkv and attn are rounded before use, probs after (they come out of one op
  // with attn), so backward sees probs rounded where forward used them unrounded.
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_;
    const AttentionShape s = ShapeFor(batch);
    float* qkv = qkv_.Begin(ctx, rows * 3 * dim_);
    float* probs = probs_.Begin(ctx, batch * heads_ * t_ * t_);
    float* attn = attn_.Begin(ctx, rows * dim_);
    be.Gemm(false, false, rows, 3 * dim_, dim_, 1.0f, x, dim_, wqkv_, 3 * dim_, 0.0f, qkv, 3 * dim_);
    be.BiasAdd(qkv, bqkv_, rows, 3 * dim_);
    qkv_.Seal(ctx);
    be.CausalAttentionForward(s, qkv, probs, attn);
    probs_.Seal(ctx);
    attn_.Seal(ctx);
    be.Gemm(false, false, rows, dim_, dim_, 1.0f, attn, dim_, wo_, dim_, 0.0f, y, dim_);
    be.BiasAdd(y, bo_, rows, dim_);
  }
  void Backward(const StepContext& ctx, const float* x, const float*, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_;
    const AttentionShape s = ShapeFor(batch);
    const float* qkv = qkv_.Get(ctx);
    const float* probs = probs_.Get(ctx);
    const float* attn = attn_.Get(ctx);
    float* dattn = TransientFloats(ctx, dattn_, rows * dim_);
    float* dqkv = TransientFloats(ctx, dqkv_, rows * 3 * dim_);
    void* ws = TransientBytes(ctx, workspace_, be.CausalAttentionWorkspaceBytes(s));
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
  SavedActivation qkv_, probs_, attn_;  // forward, kept for backward
  Scratch dattn_, dqkv_, workspace_;     // backward only (when no transient arena)
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
  void SetActivationStorage(ActivationStorage storage) override {
    for (SavedActivation* a : {&a0_, &h_, &a2_, &a3_, &a4_}) a->set_bf16(storage != ActivationStorage::kFp32);
    At(1).SetActivationStorage(storage);
  }
  // The arena's memory is scoped to where each activation is used, so a block holds
  // at once only what one stage needs (bf16: the fp32 copies of its saved activations).
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_, n = rows * dim_;
    float* h = h_.Begin(ctx, n);  // x + Attn(LN1(x)): needed until the end
    {
      TransientArena::OptionalScope attention_stage(ctx.transient);
      float* a0 = a0_.Begin(ctx, n);             // LN1(x)
      float* a1 = TransientFloats(ctx, a1_, n);  // Attn(a0): not needed by backward
      At(0).Forward(ctx, x, a0, batch);
      a0_.Seal(ctx);
      At(1).Forward(ctx, a0, a1, batch);
      be.CopyBytes(h, x, sizeof(float) * static_cast<size_t>(n));
      be.Axpy(1.0f, a1, h, n);
    }
    h_.Seal(ctx);
    TransientArena::OptionalScope mlp_stage(ctx.transient);
    float* a2 = a2_.Begin(ctx, n);               // LN2(h)
    At(2).Forward(ctx, h, a2, batch);
    a2_.Seal(ctx);
    float* a3 = a3_.Begin(ctx, rows * hidden_);  // Dense1(a2)
    At(3).Forward(ctx, a2, a3, rows);
    a3_.Seal(ctx);
    float* a4 = a4_.Begin(ctx, rows * hidden_);  // GELU(a3)
    At(4).Forward(ctx, a3, a4, rows);
    a4_.Seal(ctx);
    At(5).Forward(ctx, a4, y, rows);
    be.Axpy(1.0f, h, y, n);
  }
  // Each part's backward reads only its input (mlp1/mlp2 have no activation, GELU's
  // derivative comes from its input, LayerNorm keeps its statistics, attention its own
  // activations), so the input stands in for the unused output argument.
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const int64_t rows = batch * t_, n = rows * dim_;
    float* dh = TransientFloats(ctx, dh_, n);
    float* dwide = TransientFloats(ctx, dwide_, rows * hidden_);
    float* dnarrow = TransientFloats(ctx, dnarrow_, n);
    float* dnarrow2 = TransientFloats(ctx, dnarrow2_, n);
    // Second residual: dh = dy + d(LN2 path).
    {
      TransientArena::OptionalScope stage(ctx.transient);
      At(5).Backward(ctx, a4_.Get(ctx), y, dy, dwide, rows);
    }
    {
      TransientArena::OptionalScope stage(ctx.transient);
      const float* a3 = a3_.Get(ctx);
      At(4).Backward(ctx, a3, a3, dwide, dwide, rows);
    }
    {
      TransientArena::OptionalScope stage(ctx.transient);
      const float* a2 = a2_.Get(ctx);
      At(3).Backward(ctx, a2, a2, dwide, dnarrow, rows);
    }
    {
      TransientArena::OptionalScope stage(ctx.transient);
      const float* h = h_.Get(ctx);
      At(2).Backward(ctx, h, h, dnarrow, dh, batch);
    }
    be.Axpy(1.0f, dy, dh, n);
    // First residual: dx = dh + d(LN1 path).
    {
      TransientArena::OptionalScope stage(ctx.transient);
      const float* a0 = a0_.Get(ctx);
      At(1).Backward(ctx, a0, a0, dh, dnarrow, batch);
    }
    At(0).Backward(ctx, x, x, dnarrow, dx ? dnarrow2 : nullptr, batch);
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
  SavedActivation a0_, h_, a2_, a3_, a4_;     // forward activations, kept for backward
  Scratch a1_, dh_, dwide_, dnarrow_, dnarrow2_;  // dead after the call (no arena: own)
};

}  // namespace

std::unique_ptr<Layer> MakeCausalSelfAttention(int64_t heads, int64_t dim) {
  return std::make_unique<CausalSelfAttentionLayer>(heads, dim);
}
std::unique_ptr<Layer> MakeTransformerBlock(int64_t heads, int64_t dim, int64_t mlp_hidden) {
  return std::make_unique<TransformerBlockLayer>(heads, dim, mlp_hidden);
}

}  // namespace lockstep
