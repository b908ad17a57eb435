// Loss functions over a model's output. The gradient is scaled by grad_scale,
// which the trainer sets to 1/global_batch: summing the per-rank gradients
// (all-reduce SUM) then yields the mean over the global batch on every world
// size. Not thread-safe (uses the backend of the training thread).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "runtime/core/backend.h"
#include "runtime/core/tensor.h"

namespace lockstep {

enum class LossKind { kSoftmaxCrossEntropy, kMeanSquaredError, kBinaryCrossEntropyWithLogits };
const char* LossName(LossKind kind);

struct LossValue {
  double sum = 0;       // summed over the batch's samples
  int64_t correct = 0;  // argmax == label (classification losses only)
};

// output (batch, ...); targets: int32 labels (batch) for softmax cross-entropy,
// float tensors of output's shape otherwise. doutput may be null (evaluation).
LossValue ComputeLoss(Backend& backend, LossKind kind, const Tensor& output, const Tensor& targets,
                      float grad_scale, Tensor* doutput);

// Checks that a loss fits a model's per-sample output shape.
Status ValidateLoss(LossKind kind, const Shape& output_shape);

}  // namespace lockstep
