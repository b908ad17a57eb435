// Losses on the CPU: fused, numerically stable softmax + cross-entropy with
// sparse integer labels; mean squared error; binary cross-entropy with logits.
// Each returns the SUM of per-sample losses (in double) and, when the gradient
// pointer is non-null, writes d(loss_sum * grad_scale)/d(input). Raw pointers.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// logits (rows x classes), labels in [0, classes). dlogits = (softmax - onehot) * grad_scale.
double SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                           int64_t classes, float grad_scale, float* dlogits);
// Rows whose argmax (first maximum on ties) equals the label.
int64_t CountCorrect(const float* logits, const int32_t* labels, int64_t rows, int64_t classes);
// Softmax of each row into probs (rows x classes).
void Softmax(const float* logits, int64_t rows, int64_t classes, float* probs);

// sum over n of (pred - target)^2 / row_len: the per-sample mean over row_len outputs,
// summed over samples. dpred = 2 (pred - target) / row_len * grad_scale.
double MeanSquaredError(const float* pred, const float* target, int64_t n, int64_t row_len,
                        float grad_scale, float* dpred);
// Per-sample mean over row_len of BCE(sigmoid(logit), target), summed over samples; stable
// for large |logit|. dlogits = (sigmoid(logit) - target) / row_len * grad_scale.
double BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                    int64_t row_len, float grad_scale, float* dlogits);

}  // namespace lockstep::kernels::cpu
