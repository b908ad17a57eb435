// Conv2D and MaxPool2D layers (NHWC activations, HWIO filters, as Keras channels_last).
#include "runtime/core/layer.h"

namespace lockstep {
namespace {

Status CheckSpatialInput(const char* kind, const Shape& in) {
  if (in.size() != 3) {
    return InvalidArgumentError(std::string(kind) + " expects a (height, width, channels) input, got " +
                                ShapeToString(in));
  }
  return Status::Ok();
}

class Conv2dLayer final : public Layer {
 public:
  explicit Conv2dLayer(const Conv2dOptions& o) : o_(o), epilogue_(o.activation) {}
  std::string Kind() const override { return "conv2d"; }
  std::string Describe() const override {
    return "filters=" + std::to_string(o_.filters) + " kernel=" + std::to_string(o_.kernel_h) + "x" +
           std::to_string(o_.kernel_w) + " stride=" + std::to_string(o_.stride_h) + "x" +
           std::to_string(o_.stride_w) + " pad=" + std::to_string(o_.pad_h) + "x" +
           std::to_string(o_.pad_w) + epilogue_.Describe();
  }
  Result<Shape> Build(const Shape& in) override {
    LS_RETURN_IF_ERROR(CheckSpatialInput("conv2d", in));
    if (o_.filters <= 0 || o_.kernel_h <= 0 || o_.kernel_w <= 0 || o_.stride_h <= 0 ||
        o_.stride_w <= 0 || o_.pad_h < 0 || o_.pad_w < 0) {
      return InvalidArgumentError("conv2d needs filters, kernel and strides > 0 and padding >= 0 (" +
                                  Describe() + ")");
    }
    input_shape_ = in;
    shape_.in_h = in[0];
    shape_.in_w = in[1];
    shape_.in_c = in[2];
    shape_.out_c = o_.filters;
    shape_.kernel_h = o_.kernel_h;
    shape_.kernel_w = o_.kernel_w;
    shape_.stride_h = o_.stride_h;
    shape_.stride_w = o_.stride_w;
    shape_.pad_h = o_.pad_h;
    shape_.pad_w = o_.pad_w;
    if (in[0] + 2 * o_.pad_h < o_.kernel_h || in[1] + 2 * o_.pad_w < o_.kernel_w) {
      return InvalidArgumentError("conv2d " + Describe() + " on input " + ShapeToString(in) +
                                  " would produce an empty output: the padded input is smaller "
                                  "than the kernel");
    }
    output_shape_ = {shape_.out_h(), shape_.out_w(), o_.filters};
    return output_shape_;
  }
  std::vector<ParamSpec> ParamSpecs() const override {
    int64_t taps = o_.kernel_h * o_.kernel_w;
    std::vector<ParamSpec> specs = {{"kernel", {o_.kernel_h, o_.kernel_w, shape_.in_c, o_.filters},
                                     o_.init, taps * shape_.in_c, taps * o_.filters}};
    if (o_.use_bias) specs.push_back({"bias", {o_.filters}, ParamInit::kZeros, 1, 1});
    return specs;
  }
  void BindParams(const std::vector<Tensor>& p, const std::vector<Tensor>& g) override {
    w_ = p[0].data<float>();
    dw_ = g[0].data<float>();
    if (o_.use_bias) {
      b_ = p[1].data<float>();
      db_ = g[1].data<float>();
    }
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Conv2dShape s = ShapeFor(batch);
    void* ws = Workspace(ctx, s);
    ctx.backend->Conv2dForwardBiasActivation(s, x, w_, o_.use_bias ? b_ : nullptr, epilogue_.activation(), y, ws);
  }
  void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy_out, float* dx,
                int64_t batch) override {
    Conv2dShape s = ShapeFor(batch);
    Backend& be = *ctx.backend;
    const float* dy = epilogue_.Backward(ctx, y, dy_out, s.col_rows() * o_.filters);
    void* ws = Workspace(ctx, s);
    if (o_.use_bias) be.BiasBackward(dy, s.col_rows(), o_.filters, ctx.grad_beta, db_);
    be.Conv2dBackwardFilter(s, x, dy, ctx.grad_beta, dw_, ws);
    if (dx) be.Conv2dBackwardData(s, dy, w_, dx, ws);
  }
  double ForwardFlops() const override {
    return 2.0 * shape_.out_h() * shape_.out_w() * shape_.col_cols() * o_.filters;
  }
  double WeightGradFlops() const override { return ForwardFlops(); }

 private:
  Conv2dShape ShapeFor(int64_t batch) const {
    Conv2dShape s = shape_;
    s.batch = batch;
    return s;
  }
  Conv2dOptions o_;
  FusedEpilogue epilogue_;
  Conv2dShape shape_;
  // The convolution's workspace (im2col columns, cuDNN's): call-scoped.
  void* Workspace(const StepContext& ctx, const Conv2dShape& s) {
    return TransientBytes(ctx, workspace_, ctx.backend->Conv2dWorkspaceBytes(s));
  }
  Scratch workspace_;
  float *w_ = nullptr, *dw_ = nullptr, *b_ = nullptr, *db_ = nullptr;
};

class MaxPool2dLayer final : public Layer {
 public:
  explicit MaxPool2dLayer(const Pool2dOptions& o) : o_(o) {}
  std::string Kind() const override { return "maxpool2d"; }
  std::string Describe() const override {
    return "pool=" + std::to_string(o_.window_h) + "x" + std::to_string(o_.window_w) +
           " stride=" + std::to_string(o_.stride_h) + "x" + std::to_string(o_.stride_w) +
           " pad=" + std::to_string(o_.pad_h) + "x" + std::to_string(o_.pad_w);
  }
  Result<Shape> Build(const Shape& in) override {
    LS_RETURN_IF_ERROR(CheckSpatialInput("maxpool2d", in));
    if (o_.window_h <= 0 || o_.window_w <= 0 || o_.stride_h <= 0 || o_.stride_w <= 0 ||
        o_.pad_h < 0 || o_.pad_w < 0 || o_.pad_h >= o_.window_h || o_.pad_w >= o_.window_w) {
      return InvalidArgumentError("maxpool2d needs pool and strides > 0 and 0 <= padding < pool (" +
                                  Describe() + ")");
    }
    input_shape_ = in;
    shape_.in_h = in[0];
    shape_.in_w = in[1];
    shape_.channels = in[2];
    shape_.window_h = o_.window_h;
    shape_.window_w = o_.window_w;
    shape_.stride_h = o_.stride_h;
    shape_.stride_w = o_.stride_w;
    shape_.pad_h = o_.pad_h;
    shape_.pad_w = o_.pad_w;
    if (in[0] + 2 * o_.pad_h < o_.window_h || in[1] + 2 * o_.pad_w < o_.window_w) {
      return InvalidArgumentError("maxpool2d " + Describe() + " on input " + ShapeToString(in) +
                                  " would produce an empty output: the input is smaller than the "
                                  "pool window");
    }
    output_shape_ = {shape_.out_h(), shape_.out_w(), in[2]};
    return output_shape_;
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    Pool2dShape s = shape_;
    s.batch = batch;
    size_t bytes = sizeof(int32_t) * batch * NumElements(output_shape_);
    auto* argmax = static_cast<int32_t*>(argmax_.Get(*ctx.backend, bytes));
    ctx.backend->MaxPool2dForward(s, x, y, argmax);
  }
  void Backward(const StepContext& ctx, const float*, const float*, const float* dy, float* dx,
                int64_t batch) override {
    if (!dx) return;
    Pool2dShape s = shape_;
    s.batch = batch;
    size_t bytes = sizeof(int32_t) * batch * NumElements(output_shape_);
    ctx.backend->MaxPool2dBackward(s, dy, static_cast<int32_t*>(argmax_.Get(*ctx.backend, bytes)), dx);
  }
  double InputGradFlops() const override { return 0; }

 private:
  Pool2dOptions o_;
  Pool2dShape shape_;
  Scratch argmax_;
};

}  // namespace

std::unique_ptr<Layer> MakeConv2d(const Conv2dOptions& o) {
  LS_CHECK(CanFuseActivation(o.activation)) << "conv2d cannot fuse " << ActivationName(o.activation);
  return std::make_unique<Conv2dLayer>(o);
}
std::unique_ptr<Layer> MakeMaxPool2d(const Pool2dOptions& o) {
  return std::make_unique<MaxPool2dLayer>(o);
}

}  // namespace lockstep
