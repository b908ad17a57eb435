// Dropout: one thread per group of 4 elements of a row (one Philox call gives 4
// words), exactly the CPU's counter {e/4, sample, step_lo, step_hi ^ layer << 16}
// and key {seed_lo, seed_hi}. The scale 1/(1-rate) is computed once on the host.
#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dropout.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/philox.h"

namespace lockstep::kernels::cuda {
namespace {

struct DropoutParams {
  uint32_t key0, key1, step_lo, step_hi;
  int64_t rows, row_len, groups_per_row, first_global_row;
  float rate, scale;
};

__global__ void DropoutForwardKernel(DropoutParams p, const float* x, float* y, uint8_t* mask) {
  const int64_t groups = p.rows * p.groups_per_row;
  LS_GRID_STRIDE_LOOP(g, groups) {
    const int64_t r = g / p.groups_per_row;
    const int64_t e0 = (g % p.groups_per_row) * 4;
    const uint32_t sample = static_cast<uint32_t>(p.first_global_row + r);
    const PhiloxWords bits = Philox4x32(
        PhiloxWords{{static_cast<uint32_t>(e0 / 4), sample, p.step_lo, p.step_hi}}, p.key0, p.key1);
    const int64_t lanes = p.row_len - e0 < 4 ? p.row_len - e0 : 4;
    for (int64_t j = 0; j < lanes; ++j) {
      const int64_t i = r * p.row_len + e0 + j;
      const bool keep = PhiloxUniform(bits.w[j]) >= p.rate;
      mask[i] = keep ? 1 : 0;
      y[i] = keep ? x[i] * p.scale : 0.0f;
    }
  }
}

__global__ void DropoutBackwardKernel(const float* dy, const uint8_t* mask, float* dx, int64_t n,
                                      float scale) {
  LS_GRID_STRIDE_LOOP(i, n) { dx[i] = mask[i] ? dy[i] * scale : 0.0f; }
}

}  // namespace

void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask, int64_t rows,
                    int64_t row_len, int64_t first_global_row, float rate, cudaStream_t stream) {
  LS_CHECK(rate >= 0.0f && rate < 1.0f) << "DropoutForward: rate " << rate << " not in [0, 1)";
  LS_CHECK(rows >= 0 && row_len >= 0 && first_global_row >= 0)
      << "DropoutForward: rows=" << rows << " row_len=" << row_len
      << " first_global_row=" << first_global_row;
  if (rows == 0 || row_len == 0) return;
  DropoutParams p;
  p.key0 = static_cast<uint32_t>(key.seed);
  p.key1 = static_cast<uint32_t>(key.seed >> 32);
  p.step_lo = static_cast<uint32_t>(key.step);
  p.step_hi = static_cast<uint32_t>(key.step >> 32) ^ (key.layer << 16);
  p.rows = rows;
  p.row_len = row_len;
  p.groups_per_row = (row_len + 3) / 4;
  p.first_global_row = first_global_row;
  p.rate = rate;
  p.scale = 1.0f / (1.0f - rate);
  DropoutForwardKernel<<<GridFor(rows * p.groups_per_row), kThreads, 0, stream>>>(p, x, y, mask);
  LS_CUDA_CHECK_LAUNCH();
}

void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float rate,
                     cudaStream_t stream) {
  LS_CHECK(rate >= 0.0f && rate < 1.0f) << "DropoutBackward: rate " << rate << " not in [0, 1)";
  LS_CHECK_GE(n, 0) << "DropoutBackward";
  if (n == 0) return;
  DropoutBackwardKernel<<<GridFor(n), kThreads, 0, stream>>>(dy, mask, dx, n, 1.0f / (1.0f - rate));
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
