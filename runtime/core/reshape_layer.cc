// Reshape layer: forward and backward are plain copies, because the Sequential
// model gives every layer its own output buffer (no aliasing between layers).
#include "runtime/core/reshape_layer.h"

#include <string>

namespace lockstep {

Result<Shape> ResolveReshape(const Shape& input, const Shape& target) {
  if (target.empty()) return InvalidArgumentError("reshape needs a non-empty shape");
  int inferred = -1;
  int64_t known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      if (inferred >= 0)
        return InvalidArgumentError("reshape " + ShapeToString(target) + ": at most one -1");
      inferred = static_cast<int>(i);
    } else if (target[i] <= 0) {
      return InvalidArgumentError("reshape " + ShapeToString(target) +
                                  ": sizes must be > 0 (or one -1)");
    } else {
      known *= target[i];
    }
  }
  const int64_t count = NumElements(input);
  Shape out = target;
  if (inferred >= 0) {
    if (count % known != 0) {
      return InvalidArgumentError("reshape " + ShapeToString(target) + ": input " +
                                  ShapeToString(input) + " has " + std::to_string(count) +
                                  " elements, not a multiple of " + std::to_string(known));
    }
    out[static_cast<size_t>(inferred)] = count / known;
  } else if (known != count) {
    return InvalidArgumentError("reshape to " + ShapeToString(target) + " (" +
                                std::to_string(known) + " elements) does not match the input " +
                                ShapeToString(input) + " (" + std::to_string(count) + " elements)");
  }
  return out;
}

namespace {

class ReshapeLayer final : public Layer {
 public:
  explicit ReshapeLayer(Shape target) : target_(std::move(target)) {}
  std::string Kind() const override { return "reshape"; }
  bool CopiesValues() const override { return true; }
  std::string Describe() const override { return "shape=" + ShapeToString(target_); }
  Result<Shape> Build(const Shape& in) override {
    LS_ASSIGN_OR_RETURN(Shape out, ResolveReshape(in, target_));
    input_shape_ = in;
    output_shape_ = out;
    return out;
  }
  void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) override {
    ctx.backend->CopyBytes(y, x, Bytes(batch));
  }
  void Backward(const StepContext& ctx, const float*, const float*, const float* dy, float* dx,
                int64_t batch) override {
    if (dx) ctx.backend->CopyBytes(dx, dy, Bytes(batch));
  }
  double InputGradFlops() const override { return 0; }

 private:
  size_t Bytes(int64_t batch) const {
    return sizeof(float) * static_cast<size_t>(batch * NumElements(input_shape_));
  }
  Shape target_;
};

}  // namespace

std::unique_ptr<Layer> MakeReshape(const Shape& target) {
  return std::make_unique<ReshapeLayer>(target);
}

}  // namespace lockstep
