// Softmax + cross-entropy: one block per row. The row maximum and argmax, then the
// sum of exp(x - max) in double, are block reductions in a fixed tree; the
// per-row results go to a workspace that one block sums in a fixed order.
#include <cmath>

#include "common/check.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/loss.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr int kMaxRowThreads = 256;

// Threads per row block: a power of two in [32, 256], about the number of classes.
int RowThreads(int64_t classes) {
  int t = 32;
  while (t < kMaxRowThreads && t < classes) t *= 2;
  return t;
}

// Row maximum with its first index: larger value wins, equal values -> smaller index.
// Each thread scans j = tid, tid + T, ... (ascending) keeping the first strict maximum.
__device__ void BlockArgMax(const float* row, int64_t classes, float* best_v, int64_t* best_i) {
  __shared__ float sv[kMaxRowThreads];
  __shared__ int64_t si[kMaxRowThreads];
  const int t = threadIdx.x;
  float v = -INFINITY;
  int64_t idx = classes;  // "none yet": loses every tie
  for (int64_t j = t; j < classes; j += blockDim.x) {
    if (idx == classes || row[j] > v) {
      v = row[j];
      idx = j;
    }
  }
  sv[t] = v;
  si[t] = idx;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (t < half) {
      const float ov = sv[t + half];
      const int64_t oi = si[t + half];
      if (oi != classes && (si[t] == classes || ov > sv[t] || (ov == sv[t] && oi < si[t]))) {
        sv[t] = ov;
        si[t] = oi;
      }
    }
    __syncthreads();
  }
  *best_v = sv[0];
  *best_i = si[0];
  __syncthreads();
}

// One block per row. row_loss/row_correct: (rows) in the workspace.
__global__ void SoftmaxCrossEntropyRowKernel(const float* logits, const int32_t* labels,
                                             int64_t classes, float grad_scale, float* dlogits,
                                             double* row_loss, int32_t* row_correct) {
  __shared__ double scratch[kMaxRowThreads];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * classes;
  float mx_f;
  int64_t arg;
  BlockArgMax(row, classes, &mx_f, &arg);
  const double mx = mx_f;
  double part = 0.0;
  for (int64_t j = threadIdx.x; j < classes; j += blockDim.x)
    part += exp(static_cast<double>(row[j]) - mx);
  const double sum = BlockSum(part, scratch);
  const int32_t label = labels[r];
  const bool valid = label >= 0 && label < classes;
  if (threadIdx.x == 0) {
    row_loss[r] = valid ? log(sum) - (static_cast<double>(row[label]) - mx) : NAN;
    row_correct[r] = valid && arg == label ? 1 : 0;
  }
  if (dlogits != nullptr) {
    float* d = dlogits + r * classes;
    const double inv = 1.0 / sum;
    for (int64_t j = threadIdx.x; j < classes; j += blockDim.x) {
      const double p = exp(static_cast<double>(row[j]) - mx) * inv;
      d[j] = valid ? static_cast<float>((p - (j == label ? 1.0 : 0.0)) * grad_scale) : NAN;
    }
  }
}

constexpr int kSumThreads = 256;

__global__ void SumRowsKernel(const double* row_loss, const int32_t* row_correct, int64_t rows,
                              double* loss_sum, int64_t* correct) {
  __shared__ double dscratch[kSumThreads];
  __shared__ long long iscratch[kSumThreads];
  double l = 0.0;
  long long c = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    l += row_loss[i];
    c += row_correct[i];
  }
  const double total = BlockSum(l, dscratch);
  const long long hits = BlockSum(c, iscratch);
  if (threadIdx.x == 0) {
    *loss_sum = total;
    if (correct != nullptr) *correct = hits;
  }
}

__global__ void SoftmaxRowKernel(const float* logits, int64_t classes, float* probs) {
  __shared__ double scratch[kMaxRowThreads];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * classes;
  float mx_f;
  int64_t arg;
  BlockArgMax(row, classes, &mx_f, &arg);
  const double mx = mx_f;
  double part = 0.0;
  for (int64_t j = threadIdx.x; j < classes; j += blockDim.x)
    part += exp(static_cast<double>(row[j]) - mx);
  const double inv = 1.0 / BlockSum(part, scratch);
  for (int64_t j = threadIdx.x; j < classes; j += blockDim.x) {
    probs[r * classes + j] = static_cast<float>(exp(static_cast<double>(row[j]) - mx) * inv);
  }
}

size_t RowLossBytes(int64_t rows) {
  return (static_cast<size_t>(rows) * sizeof(double) + 255) / 256 * 256;
}

void CheckShape(const char* what, int64_t rows, int64_t classes) {
  LS_CHECK(rows >= 0 && classes > 0) << what << ": rows=" << rows << " classes=" << classes;
  LS_CHECK_LE(rows, int64_t{0x7fffffff}) << what << ": one block per row, too many rows";
}

}  // namespace

size_t SoftmaxCrossEntropyWorkspaceBytes(int64_t rows) {
  return RowLossBytes(rows) + static_cast<size_t>(rows < 0 ? 0 : rows) * sizeof(int32_t);
}

void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows, int64_t classes,
                         float grad_scale, float* dlogits, double* loss_sum, int64_t* correct,
                         void* workspace, cudaStream_t stream) {
  CheckShape("SoftmaxCrossEntropy", rows, classes);
  LS_CHECK(loss_sum != nullptr) << "SoftmaxCrossEntropy: null loss_sum";
  LS_CHECK(rows == 0 || workspace != nullptr) << "SoftmaxCrossEntropy: null workspace";
  double* row_loss = static_cast<double*>(workspace);
  int32_t* row_correct =
      reinterpret_cast<int32_t*>(static_cast<char*>(workspace) + RowLossBytes(rows));
  if (rows > 0) {
    SoftmaxCrossEntropyRowKernel<<<static_cast<unsigned int>(rows), RowThreads(classes), 0,
                                   stream>>>(logits, labels, classes, grad_scale, dlogits, row_loss,
                                             row_correct);
    LS_CUDA_CHECK_LAUNCH();
  }
  SumRowsKernel<<<1, kSumThreads, 0, stream>>>(row_loss, row_correct, rows, loss_sum, correct);
  LS_CUDA_CHECK_LAUNCH();
}

void Softmax(const float* logits, int64_t rows, int64_t classes, float* probs,
             cudaStream_t stream) {
  CheckShape("Softmax", rows, classes);
  if (rows == 0) return;
  SoftmaxRowKernel<<<static_cast<unsigned int>(rows), RowThreads(classes), 0, stream>>>(
      logits, classes, probs);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
