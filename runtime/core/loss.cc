#include "runtime/core/loss.h"

namespace lockstep {

const char* LossName(LossKind kind) {
  switch (kind) {
    case LossKind::kSoftmaxCrossEntropy: return "softmax_cross_entropy";
    case LossKind::kMeanSquaredError: return "mean_squared_error";
    case LossKind::kBinaryCrossEntropyWithLogits: return "binary_cross_entropy_with_logits";
  }
  return "?";
}

Status ValidateLoss(LossKind kind, const Shape& out) {
  if (kind == LossKind::kSoftmaxCrossEntropy && (out.size() != 1 || out[0] < 2)) {
    return InvalidArgumentError(std::string(LossName(kind)) +
                                " needs a flat output of at least 2 classes, the model outputs " +
                                ShapeToString(out));
  }
  return Status::Ok();
}

LossValue ComputeLoss(Backend& backend, LossKind kind, const Tensor& output, const Tensor& targets,
                      float grad_scale, Tensor* doutput) {
  int64_t batch = output.dim(0);
  int64_t row = batch ? output.numel() / batch : 0;
  float* grad = doutput ? doutput->data<float>() : nullptr;
  LossValue v;
  switch (kind) {
    case LossKind::kSoftmaxCrossEntropy: {
      const int32_t* labels = targets.data<int32_t>();
      v.sum = backend.SoftmaxCrossEntropyAndCorrect(output.data<float>(), labels, batch, row, grad_scale, grad,
                                                    &v.correct);
      break;
    }
    case LossKind::kMeanSquaredError:
      v.sum = backend.MeanSquaredError(output.data<float>(), targets.data<float>(), output.numel(),
                                       row, grad_scale, grad);
      break;
    case LossKind::kBinaryCrossEntropyWithLogits:
      v.sum = backend.BinaryCrossEntropyWithLogits(output.data<float>(), targets.data<float>(),
                                                   output.numel(), row, grad_scale, grad);
      break;
  }
  return v;
}

}  // namespace lockstep
