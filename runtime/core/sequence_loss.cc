#include "runtime/core/sequence_loss.h"

namespace lockstep {

LossValue SequenceSoftmaxCrossEntropy(Backend& backend, const Tensor& output, const Tensor& labels,
                                      float grad_scale, Tensor* doutput) {
  LS_CHECK_EQ(output.shape().size(), 3u) << "sequence loss needs (batch, T, vocab) logits";
  const int64_t tokens = output.dim(0) * output.dim(1), vocab = output.dim(2);
  LS_CHECK_EQ(labels.numel(), tokens) << "sequence loss: one label per position";
  Tensor rows = output.Reshaped({tokens, vocab});
  Tensor flat_labels = labels.Reshaped({tokens});
  Tensor drows;
  if (doutput != nullptr) drows = doutput->Reshaped({tokens, vocab});
  return ComputeLoss(backend, LossKind::kSoftmaxCrossEntropy, rows, flat_labels, grad_scale,
                     doutput != nullptr ? &drows : nullptr);
}

Status ValidateSequenceLoss(const Shape& out) {
  if (out.size() != 2 || out[1] < 2) {
    return InvalidArgumentError(
        "per-time-step softmax_cross_entropy needs a (T, vocab) output with vocab >= 2, the model "
        "outputs " + ShapeToString(out));
  }
  return Status::Ok();
}

}  // namespace lockstep
