// The CUDA backend (issue 6): the op table of backend.h on one GPU, through the
// kernels of kernels/cuda (cuBLASLt GEMM, cuDNN or im2col convolutions, and the
// hand-written kernels). Every op is queued on the backend's one compute stream;
// ops that return a value to the host (losses, sums of squares, copies to the
// host) wait for it. Device memory comes from a caching allocator, so the
// steady-state step calls no cudaMalloc.
//
// Built only with the CUDA backend; otherwise CreateCudaBackend says so.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "runtime/core/backend.h"

namespace lockstep {

struct CudaBackendOptions {
  // CUDA device index; -1: this rank's local rank modulo the visible devices, so the
  // ranks of a node spread over its GPUs (several ranks share one when there are fewer).
  int device = -1;
  int local_rank = 0;
  // Deterministic kernels: deterministic cuDNN algorithms (every hand-written
  // kernel already is), so two runs give bitwise-equal parameters.
  bool deterministic = false;
  enum class ConvPath { kAuto, kCudnn, kIm2col };
  // kAuto: cuDNN when the build has it, else im2col + cuBLASLt.
  ConvPath conv = ConvPath::kAuto;
  // TF32 tensor cores in fp32 GEMMs (~1e-3 relative error); off keeps fp32 exact-ish.
  bool allow_tf32 = false;
  // kBf16Inputs: GEMMs on bf16 tensor cores (backend.h, GemmPrecision).
  GemmPrecision gemm_precision = GemmPrecision::kFp32;
};

// Whether this build has the CUDA backend and this process sees a usable device;
// *why_not (when non-null) says what is missing otherwise.
bool CudaBackendAvailable(std::string* why_not);

// The backend on options.device; an Unavailable error naming the reason without a
// usable device or without CUDA in the build.
Result<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

}  // namespace lockstep
