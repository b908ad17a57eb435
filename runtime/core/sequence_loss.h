// Per-time-step softmax cross-entropy for language models: the model outputs
// (batch, T, vocab) logits, the targets are (batch, T) int32 next-token ids.
// Built on ComputeLoss by viewing the logits as (batch * T, vocab) rows. The
// returned sum and correct count are over batch * T tokens, so the trainer sets
// grad_scale = 1 / (global_batch * T) for a per-token mean gradient and reports
// sum / tokens as nats per token (divide by ln 2 for bits). Not thread-safe
// (uses the backend of the training thread).
#pragma once

#include "runtime/core/loss.h"

namespace lockstep {

// output (batch, T, vocab) floats; labels (batch, T) or (batch * T) int32 in
// [0, vocab); doutput (same shape as output) may be null (evaluation).
LossValue SequenceSoftmaxCrossEntropy(Backend& backend, const Tensor& output, const Tensor& labels,
                                      float grad_scale, Tensor* doutput);

// Checks that a model's per-sample output is (T, vocab) with vocab >= 2.
Status ValidateSequenceLoss(const Shape& output_shape);

}  // namespace lockstep
