// Losses: each row is reduced in double after subtracting its maximum, so
// logits of any magnitude give finite losses and gradients. Deterministic.
#include "kernels/cpu/loss.h"

#include <cmath>

#include "common/check.h"
#include "kernels/cpu/fast_math.h"

namespace lockstep::kernels::cpu {
namespace {

inline int64_t ArgMax(const float* row, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j) {
    if (row[j] > row[best]) best = j;
  }
  return best;
}

inline float RowMax(const float* row, int64_t n) {
  float m = row[0];
  for (int64_t j = 1; j < n; ++j) m = row[j] > m ? row[j] : m;
  return m;
}

// out_j = e^(row_j - mx) (FastExp, within 2 ulp of expf); returns their sum in double.
// Vectorised, where std::exp on doubles was 2% of a language model's step.
LS_KERNEL_CLONES double ExpShiftedRow(const float* row, int64_t n, float mx, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = FastExp(row[j] - mx);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += out[j];
  return sum;
}

// Sigmoid without overflow for any sign.
inline double StableSigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace

double SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                           int64_t classes, float grad_scale, float* dlogits) {
  LS_CHECK_GT(classes, 0) << "SoftmaxCrossEntropy: classes";
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * classes;
    const int32_t label = labels[r];
    LS_CHECK(label >= 0 && label < classes)
        << "SoftmaxCrossEntropy: label " << label << " of row " << r << " not in [0, " << classes
        << ")";
    const double mx = RowMax(row, classes);
    double sum = 0.0;
    if (dlogits == nullptr) {
      for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
    } else {
      // One exp per element: e_j is parked in the gradient row, then scaled.
      float* d = dlogits + r * classes;
      sum = ExpShiftedRow(row, classes, static_cast<float>(mx), d);
      const double inv = 1.0 / sum, scale = inv * grad_scale;
      const double e_label = d[label];
      for (int64_t j = 0; j < classes; ++j) d[j] = static_cast<float>(d[j] * scale);
      d[label] = static_cast<float>((e_label * inv - 1.0) * grad_scale);
    }
    total += std::log(sum) - (static_cast<double>(row[label]) - mx);
  }
  return total;
}

int64_t CountCorrect(const float* logits, const int32_t* labels, int64_t rows, int64_t classes) {
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (ArgMax(logits + r * classes, classes) == labels[r]) ++correct;
  }
  return correct;
}

void Softmax(const float* logits, int64_t rows, int64_t classes, float* probs) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * classes;
    float* p = probs + r * classes;
    const double mx = RowMax(row, classes);
    double sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
    const double inv = 1.0 / sum;
    for (int64_t j = 0; j < classes; ++j) {
      p[j] = static_cast<float>(std::exp(static_cast<double>(row[j]) - mx) * inv);
    }
  }
}

double MeanSquaredError(const float* pred, const float* target, int64_t n, int64_t row_len,
                        float grad_scale, float* dpred) {
  LS_CHECK_GT(row_len, 0) << "MeanSquaredError: row_len";
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(pred[i]) - target[i];
    total += d * d;
  }
  if (dpred != nullptr) {
    const float g = 2.0f / static_cast<float>(row_len) * grad_scale;
    for (int64_t i = 0; i < n; ++i) dpred[i] = (pred[i] - target[i]) * g;
  }
  return total / static_cast<double>(row_len);
}

double BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                    int64_t row_len, float grad_scale, float* dlogits) {
  LS_CHECK_GT(row_len, 0) << "BinaryCrossEntropyWithLogits: row_len";
  double total = 0.0;
  const double g = static_cast<double>(grad_scale) / static_cast<double>(row_len);
  for (int64_t i = 0; i < n; ++i) {
    const double x = logits[i], t = target[i];
    // max(x, 0) - x t + log(1 + exp(-|x|)): never overflows, exact tails.
    total += (x > 0 ? x : 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
    if (dlogits != nullptr) dlogits[i] = static_cast<float>((StableSigmoid(x) - t) * g);
  }
  return total / static_cast<double>(row_len);
}

}  // namespace lockstep::kernels::cpu
