// 2-D convolution on the GPU through cuDNN 9's legacy convolution API, with the
// layouts and semantics of kernels/cpu/conv.h: activations NHWC float, filters HWIO
// (kernel_h, kernel_w, in_c, out_c), no bias, cross-correlation. cuDNN wants NHWC
// filters as OHWI (out_c, kh, kw, in_c), so the filter (or its gradient) is transposed
// through a scratch region at the front of the caller's workspace.
// One CudnnConvolution per device and user: it owns a cuDNN handle created on the
// device current at construction, and a per-shape cache of descriptors and chosen
// algorithms. Not thread-safe. Every pass is asynchronous on the stream it is given
// (a stream of that device); a workspace must not be used by two streams at once.
// Only built with cuDNN (LOCKSTEP_HAVE_CUDNN).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>

#include "kernels/cpu/conv.h"

namespace lockstep::kernels::cuda {

using Conv2dShape = ::lockstep::kernels::cpu::Conv2dShape;

class CudnnConvolution {
 public:
  // cuDNN workspace allowed to one algorithm; heuristics' picks needing more are skipped.
  static constexpr size_t kDefaultAlgorithmWorkspaceCap = size_t{256} << 20;

  // deterministic: only algorithms cuDNN reports as CUDNN_DETERMINISTIC (bitwise
  // repeatable; the backward passes otherwise may use atomics). allow_tf32: algorithms
  // on TF32 tensor cores are allowed too, except FFT and Winograd ones; for operands
  // rounded to bf16 (GemmPrecision::kBf16Inputs), which TF32 holds exactly, so the
  // products stay exact and only the summation order differs from fp32 FMA kernels.
  // Otherwise fp32 FMA kernels only. Aborts when cudnnCreate fails (no device, no cuDNN
  // engine libraries).
  explicit CudnnConvolution(bool deterministic, bool allow_tf32 = false,
                            size_t algorithm_workspace_cap = kDefaultAlgorithmWorkspaceCap);
  ~CudnnConvolution();
  CudnnConvolution(const CudnnConvolution&) = delete;
  CudnnConvolution& operator=(const CudnnConvolution&) = delete;

  bool deterministic() const;
  bool allow_tf32() const;

  // Whether cuDNN offers a usable algorithm for all three passes of s (in deterministic
  // mode, deterministic ones); otherwise false with *why (if non-null) naming the pass
  // and the rejected algorithms. The passes below abort on an unsupported shape.
  // Chooses and caches the algorithms, like WorkspaceBytes.
  bool Supports(const Conv2dShape& s, std::string* why = nullptr);

  // Bytes of device workspace every pass below needs for this shape: the filter scratch
  // plus the largest cuDNN workspace of the three chosen algorithms. 0 for batch 0.
  // Chooses (and caches) the algorithms on first use of a shape. Pass workspace
  // pointers aligned to 256 bytes (cudaMalloc's alignment).
  size_t WorkspaceBytes(const Conv2dShape& s);

  // y (N, out_h, out_w, out_c) = conv(x (N, in_h, in_w, in_c), w (kh, kw, in_c, out_c)).
  // y is overwritten (never read).
  void Forward(const Conv2dShape& s, const float* x, const float* w, float* y, void* workspace,
               cudaStream_t stream);
  // dx (N, in_h, in_w, in_c) = gradient w.r.t. the input, overwritten (never read).
  void BackwardData(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                    void* workspace, cudaStream_t stream);
  // dw (kh, kw, in_c, out_c) = beta * dw + gradient w.r.t. the filter; beta is 0 (dw not
  // read) or 1. The gradient is computed into the scratch and added in one pass.
  void BackwardFilter(const Conv2dShape& s, const float* x, const float* dy, float beta, float* dw,
                      void* workspace, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::kernels::cuda
