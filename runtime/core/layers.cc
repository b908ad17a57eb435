// Dense, Activation, Flatten and Dropout layers.
#include <sstream>

#include "runtime/core/layer.h"
#include "runtime/core/transient_arena.h"

namespace lockstep {

void* Scratch::Get(Backend& backend, size_t bytes) {
  if (buffer_.nbytes() < bytes || buffer_.raw() == nullptr) {
    buffer_ = Tensor::Empty(backend, {static_cast<int64_t>(bytes)}, DType::kUint8);
  }
  return buffer_.raw();
}

void* TransientBytes(const StepContext& ctx, Scratch& fallback, size_t bytes) {
  if (ctx.transient != nullptr) return ctx.transient->Acquire(bytes);
  return fallback.Get(*ctx.backend, bytes);
}

float* SavedActivation::Begin(const StepContext& ctx, int64_t n) {
  n_ = n;
  working_ = Packed(ctx) ? ctx.transient->AcquireFloats(n) : fp32_.Floats(*ctx.backend, n);
  return working_;
}

void SavedActivation::Seal(const StepContext& ctx) {
  if (!bf16_) return;
  uint16_t* bits =
      Packed(ctx) ? static_cast<uint16_t*>(bits_.Get(*ctx.backend, sizeof(uint16_t) * static_cast<size_t>(n_)))
                  : nullptr;
  ctx.backend->RoundToBf16Stored(working_, bits, n_);
}

const float* SavedActivation::Get(const StepContext& ctx) {
  if (!Packed(ctx)) return fp32_.Floats(*ctx.backend, n_);
  return ExpandForOverwrite(ctx);
}

float* SavedActivation::ExpandForOverwrite(const StepContext& ctx) {
  if (!Packed(ctx)) return nullptr;
  float* expanded = ctx.transient->AcquireFloats(n_);
  ctx.backend->Bf16ToFp32(Bits(*ctx.backend), expanded, n_);
  return expanded;
}

void SavedActivation::CopyOut(const StepContext& ctx, int64_t begin, int64_t count, float* dst) {
  LS_CHECK(begin >= 0 && count >= 0 && begin + count <= n_) << "SavedActivation::CopyOut: [" << begin << ", "
                                                            << begin + count << ") of " << n_;
  if (count == 0) return;
  if (Packed(ctx)) {
    ctx.backend->Bf16ToFp32(Bits(*ctx.backend) + begin, dst, count);
  } else {
    ctx.backend->CopyBytes(dst, fp32_.Floats(*ctx.backend, n_) + begin, sizeof(float) * static_cast<size_t>(count));
  }
}

bool CanFuseActivation(Activation act) { return act != Activation::kGelu; }

void FusedEpilogue::Forward(Backend& backend, float* y, const float* bias, int64_t rows, int64_t cols) {
  if (bias != nullptr || act_ != Activation::kIdentity) backend.BiasActivation(y, bias, rows, cols, act_);
}

const float* FusedEpilogue::Backward(const StepContext& ctx, const float* y, const float* dy, int64_t n) {
  if (act_ == Activation::kIdentity) return dy;
  float* dz = TransientFloats(ctx, dz_, n);
  ctx.backend->ActivationBackward(act_, y, y, dy, dz, n);  // derivative from the output only
  return dz;
}

std::string FusedEpilogue::Describe() const {
  return act_ == Activation::kIdentity ? "" : std::string(" ") + ActivationName(act_);
}

const char* ActivationName(Activation act) {
  switch (act) {
    case Activation::kIdentity: return "linear";
    case Activation::kRelu: return "relu";
    case Activation::kTanh: return "tanh";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kGelu: return "gelu";
  }
  return "?";
}

namespace {

// y = x W + b with W (in, out) as Keras stores Dense kernels.
class DenseLayer final : public Layer {
 public:
  DenseLayer(int64_t units, bool use_bias, ParamInit init, Activation act)
      : units_(units), use_bias_(use_bias), init_(init), epilogue_(act) {}
  std::string Kind() const override { return "dense"; }
  std::string Describe() const override {
    return "units=" + std::to_string(units_) + (use_bias_ ? "" : " no_bias") + epilogue_.Describe();
  }
  Result<Shape> Build(const Shape& in) override {
    if (in.size() != 1) {
      return InvalidArgumentError("dense expects a flat input (add a flatten layer before it), got " +
                                  ShapeToString(in));
    }
    if (units_ <= 0) return InvalidArgumentError("dense units must be > 0, got " + std::to_string(units_));
    input_shape_ = in;
    in_ = in[0];
    output_shape_ = {units_};
    return output_shape_;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    std::vector<ParamSpec> specs = {{"kernel", {in_, units_}, init_, in_, units_}};
    if (use_bias_) specs.push_back({"bias", {units_}, ParamInit::kZeros, in_, units_});
    return specs;
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    w_ = p[0].data<float>();
    dw_ = g[0].data<float>();
    if (use_bias_) {
      b_ = p[1].data<float>();
      db_ = g[1].data<float>();
    }
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    ctx.backend->GemmBiasActivation(false, false, batch, units_, in_, x, in_, w_, units_, use_bias_ ? b_ : nullptr,
                                    epilogue_.activation(), y);
  }
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy_out, float* dx,
                int64_t batch) override {
    Backend& be = *ctx.backend;
    const float* dy = epilogue_.Backward(ctx, y, dy_out, batch * units_);
    be.Gemm(true, false, in_, units_, batch, 1.0f, x, in_, dy, units_, ctx.grad_beta, dw_, units_);
    if (use_bias_) be.BiasBackward(dy, batch, units_, ctx.grad_beta, db_);
    if (dx) be.Gemm(false, true, batch, in_, units_, 1.0f, dy, units_, w_, units_, 0.0f, dx, in_);
  }
  double ForwardFlops() const override { return 2.0 * in_ * units_; }
  double WeightGradFlops() const override { return 2.0 * in_ * units_; }

 private:
  int64_t units_;
  bool use_bias_;
  int64_t in_ = 0;
  ParamInit init_;
  FusedEpilogue epilogue_;
  float *w_ = nullptr, *dw_ = nullptr, *b_ = nullptr, *db_ = nullptr;
};

class ActivationLayer final : public Layer {
 public:
  explicit ActivationLayer(Activation act) : act_(act) {}
  std::string Kind() const override { return "activation"; }
  std::string Describe() const override { return ActivationName(act_); }
  Result<Shape> Build(const Shape& in) override {
    input_shape_ = output_shape_ = in;
    return in;
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    ctx.backend->ActivationForward(act_, x, y, batch * NumElements(input_shape_));
  }
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy, float* dx,
                int64_t batch) override {
    if (dx) ctx.backend->ActivationBackward(act_, x, y, dy, dx, batch * NumElements(input_shape_));
  }
  double InputGradFlops() const override { return 0; }

 private:
  Activation act_;
};

class FlattenLayer final : public Layer {
 public:
  std::string Kind() const override { return "flatten"; }
  bool CopiesValues() const override { return true; }
  std::string Describe() const override { return ""; }
  Result<Shape> Build(const Shape& in) override {
    input_shape_ = in;
    output_shape_ = {NumElements(in)};
    return output_shape_;
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    ctx.backend->CopyBytes(y, x, sizeof(float) * batch * NumElements(input_shape_));
  }
  void Backward(const StepContext& ctx, const float*, const float*, const float* dy, float* dx,
                int64_t batch) override {
    if (dx) ctx.backend->CopyBytes(dx, dy, sizeof(float) * batch * NumElements(input_shape_));
  }
  double InputGradFlops() const override { return 0; }
};

// Inverted dropout; masks come from the counter-based RNG keyed by
// (seed, layer, step, global sample), so they do not depend on the world size.
class DropoutLayer final : public Layer {
 public:
  explicit DropoutLayer(float rate) : rate_(rate) {}
  std::string Kind() const override { return "dropout"; }
  std::string Describe() const override {
    std::ostringstream out;
    out << "rate=" << rate_;
    return out.str();
  }
  Result<Shape> Build(const Shape& in) override {
    if (!(rate_ >= 0.0f && rate_ < 1.0f)) {
      std::ostringstream msg;
      msg << "dropout rate must be in [0, 1), got " << rate_;
      return InvalidArgumentError(msg.str());
    }
    input_shape_ = output_shape_ = in;
    return in;
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    int64_t row = NumElements(input_shape_);
    training_ = ctx.training && rate_ > 0.0f;
    if (!training_) {
      ctx.backend->CopyBytes(y, x, sizeof(float) * batch * row);
      return;
    }
    auto* mask = static_cast<uint8_t*>(mask_.Get(*ctx.backend, static_cast<size_t>(batch * row)));
    DropoutKey key{ctx.seed, static_cast<uint32_t>(index_), ctx.step};
    ctx.backend->DropoutForward(key, x, y, mask, batch, row, ctx.first_global_row, rate_);
  }
  void Backward(const StepContext& ctx, const float*, const float*, const float* dy, float* dx,
                int64_t batch) override {
    if (!dx) return;
    int64_t n = batch * NumElements(input_shape_);
    if (!training_) {
      ctx.backend->CopyBytes(dx, dy, sizeof(float) * n);
      return;
    }
    ctx.backend->DropoutBackward(dy, static_cast<uint8_t*>(mask_.Get(*ctx.backend, n)), dx, n, rate_);
  }
  double InputGradFlops() const override { return 0; }

 private:
  float rate_;
  bool training_ = false;
  Scratch mask_;
};

}  // namespace

std::unique_ptr<Layer> MakeDense(int64_t units, bool use_bias, ParamInit init, Activation act) {
  LS_CHECK(CanFuseActivation(act)) << "dense cannot fuse " << ActivationName(act);
  return std::make_unique<DenseLayer>(units, use_bias, init, act);
}
std::unique_ptr<Layer> MakeActivation(Activation act) { return std::make_unique<ActivationLayer>(act); }
std::unique_ptr<Layer> MakeFlatten() { return std::make_unique<FlattenLayer>(); }
std::unique_ptr<Layer> MakeDropout(float rate) { return std::make_unique<DropoutLayer>(rate); }

}  // namespace lockstep
