// LSTM / GRU cells: one thread per (sample b, unit u) of a grid-stride loop over
// batch * units, u fastest, so a warp touches consecutive units of one gate row.
// Each thread evaluates the CPU's expressions for its element (kernels/cuda/
// recurrent_cell.h); the null-pointer cases are uniform branches rather than the
// CPU's template flags (those exist for vectorisation, not for different arithmetic).
#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/recurrent.h"
#include "kernels/cuda/recurrent_cell.h"

namespace lockstep::kernels::cuda {
namespace {

StepDims Dims(const RecurrentStep& s) { return {s.batch, s.units, s.gate_stride, s.state_stride}; }

__global__ void LstmForwardKernel(StepDims d, float* gates, const float* c_prev, float* c,
                                  float* h, float forget_bias) {
  LS_GRID_STRIDE_LOOP(idx, d.batch * d.units) {
    LstmForwardElement(d, idx, gates, c_prev, c, h, forget_bias);
  }
}

__global__ void LstmBackwardKernel(StepDims d, const float* gates, const float* c_prev,
                                   const float* c, const float* dy, int64_t dy_stride,
                                   const float* dh_carry, float* dc, float* dgates) {
  LS_GRID_STRIDE_LOOP(idx, d.batch * d.units) {
    LstmBackwardElement(d, idx, gates, c_prev, c, dy, dy_stride, dh_carry, dc, dgates);
  }
}

__global__ void GruForwardKernel(StepDims d, float* gates, float* rec, const float* rec_bias,
                                 const float* h_prev, float* h) {
  LS_GRID_STRIDE_LOOP(idx, d.batch * d.units) {
    GruForwardElement(d, idx, gates, rec, rec_bias, h_prev, h);
  }
}

__global__ void GruBackwardKernel(StepDims d, const float* gates, const float* rec,
                                  const float* h_prev, const float* dy, int64_t dy_stride,
                                  const float* dh_carry, float* dh_prev, float* dgates,
                                  float* drec) {
  LS_GRID_STRIDE_LOOP(idx, d.batch * d.units) {
    GruBackwardElement(d, idx, gates, rec, h_prev, dy, dy_stride, dh_carry, dh_prev, dgates,
                       drec);
  }
}

// Shapes the CPU takes for granted; rows of one sample must not overlap the next's.
void CheckStep(const RecurrentStep& s, int64_t gates_per_unit, const char* what) {
  LS_CHECK(s.batch >= 0 && s.units >= 0) << what << ": negative batch or units";
  LS_CHECK(s.batch <= 1 || (s.gate_stride >= gates_per_unit * s.units && s.state_stride >= s.units))
      << what << ": gate_stride " << s.gate_stride << " / state_stride " << s.state_stride
      << " shorter than a row (" << gates_per_unit << " x " << s.units << " gates, " << s.units
      << " units)";
}

void CheckDy(const RecurrentStep& s, const float* dy, int64_t dy_stride, const char* what) {
  LS_CHECK(dy == nullptr || s.batch <= 1 || dy_stride >= s.units)
      << what << ": dy_stride " << dy_stride << " shorter than a row of " << s.units;
}

}  // namespace

void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c, float* h,
                     float forget_bias, cudaStream_t stream) {
  CheckStep(s, 4, "LstmCellForward");
  const int64_t total = s.batch * s.units;
  if (total == 0) return;
  LS_CHECK(gates != nullptr && c != nullptr && h != nullptr) << "LstmCellForward: null output";
  LstmForwardKernel<<<GridFor(total), kThreads, 0, stream>>>(Dims(s), gates, c_prev, c, h,
                                                              forget_bias);
  LS_CUDA_CHECK_LAUNCH();
}

void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                      const float* c, const float* dy, int64_t dy_stride, const float* dh_carry,
                      float* dc, float* dgates, cudaStream_t stream) {
  CheckStep(s, 4, "LstmCellBackward");
  CheckDy(s, dy, dy_stride, "LstmCellBackward");
  const int64_t total = s.batch * s.units;
  if (total == 0) return;
  LS_CHECK(gates != nullptr && c != nullptr && dc != nullptr && dgates != nullptr)
      << "LstmCellBackward: null gates, c, dc or dgates";
  LstmBackwardKernel<<<GridFor(total), kThreads, 0, stream>>>(Dims(s), gates, c_prev, c, dy,
                                                               dy_stride, dh_carry, dc, dgates);
  LS_CUDA_CHECK_LAUNCH();
}

void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                    const float* h_prev, float* h, cudaStream_t stream) {
  CheckStep(s, 3, "GruCellForward");
  const int64_t total = s.batch * s.units;
  if (total == 0) return;
  LS_CHECK(gates != nullptr && rec != nullptr && rec_bias != nullptr && h != nullptr)
      << "GruCellForward: null gates, rec, rec_bias or h";
  GruForwardKernel<<<GridFor(total), kThreads, 0, stream>>>(Dims(s), gates, rec, rec_bias, h_prev,
                                                             h);
  LS_CUDA_CHECK_LAUNCH();
}

void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                     const float* h_prev, const float* dy, int64_t dy_stride,
                     const float* dh_carry, float* dh_prev, float* dgates, float* drec,
                     cudaStream_t stream) {
  CheckStep(s, 3, "GruCellBackward");
  CheckDy(s, dy, dy_stride, "GruCellBackward");
  const int64_t total = s.batch * s.units;
  if (total == 0) return;
  LS_CHECK(gates != nullptr && rec != nullptr && dh_prev != nullptr && dgates != nullptr &&
           drec != nullptr)
      << "GruCellBackward: null gates, rec, dh_prev, dgates or drec";
  GruBackwardKernel<<<GridFor(total), kThreads, 0, stream>>>(
      Dims(s), gates, rec, h_prev, dy, dy_stride, dh_carry, dh_prev, dgates, drec);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
