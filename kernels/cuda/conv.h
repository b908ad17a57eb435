// 2-D convolution on the GPU by im2col + cuBLASLt GEMM (fp32; TF32 only when asked), mirroring
// kernels/cpu/conv.h: activations NHWC, filters HWIO (kernel_h, kernel_w, in_c, out_c),
// same Conv2dShape; forward can add a bias and ReLU in the GEMM's epilogue. Pointers are
// device memory; callers pass a workspace of Conv2dWorkspaceBytes(s) bytes (may be null
// when that is 0) and a GEMM workspace.
// Launchers are asynchronous on `stream`; one workspace per stream at a time.
// allow_tf32: the GEMMs may use TF32 tensor cores (10-bit mantissa products). Exact on
// operands already rounded to bf16 (GemmPrecision::kBf16Inputs), which TF32 holds.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cpu/conv.h"
#include "kernels/cuda/gemm.h"

namespace lockstep::kernels::cuda {

using Conv2dShape = ::lockstep::kernels::cpu::Conv2dShape;

// Bound on the im2col scratch: larger batches run in chunks of whole samples.
constexpr size_t kConv2dMaxWorkspaceBytes = size_t{256} << 20;

// Bytes of scratch the three conv functions need: 0 for the 1x1 / stride 1 / no-pad
// case (x is already the im2col matrix), else the cols of one chunk of samples.
size_t Conv2dWorkspaceBytes(const Conv2dShape& s);

// y (N, out_h, out_w, out_c) = conv(x (N, in_h, in_w, in_c), w (kh, kw, in_c, out_c)).
// epilogue: applied by the GEMMs to y (cuBLASLt's fused epilogue where it has one, see
// gemm.h): kBias adds bias[c] (out_c floats, non-null exactly for kBias and kBiasRelu)
// to channel c, the ReLU ones then take max(0, .); the same as cpu::Conv2dForward
// followed by cpu::BiasActivationForward.
void Conv2dForward(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                   const float* x, const float* w, float* y, void* workspace, cudaStream_t stream,
                   bool allow_tf32 = false, GemmEpilogue epilogue = GemmEpilogue::kNone,
                   const float* bias = nullptr);
// dx (N, in_h, in_w, in_c) = gradient w.r.t. the input (overwritten).
void Conv2dBackwardData(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                        const float* dy, const float* w, float* dx, void* workspace,
                        cudaStream_t stream, bool allow_tf32 = false);
// dw (kh, kw, in_c, out_c) = beta * dw + gradient w.r.t. the filter; beta is 0 or 1.
void Conv2dBackwardFilter(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                          const float* x, const float* dy, float beta, float* dw, void* workspace,
                          cudaStream_t stream, bool allow_tf32 = false);

// cols (batch * out_h * out_w, kh * kw * in_c) from x (batch, in_h, in_w, in_c): row =
// output pixel (n, oh, ow), columns ordered (kh, kw, c), 0 for padding.
void Im2col(const Conv2dShape& s, const float* x, float* cols, cudaStream_t stream);
// dx (batch, in_h, in_w, in_c) = col2im of cols (overwritten, not accumulated): each
// element sums its cols entries in output-pixel order (the CPU's order). No atomics.
void Col2im(const Conv2dShape& s, const float* cols, float* dx, cudaStream_t stream);

namespace internal {

// The functions above with the im2col chunk bound as a parameter (the public ones pass
// kConv2dMaxWorkspaceBytes): tests use a small bound to run several chunks.
size_t Conv2dWorkspaceBytes(const Conv2dShape& s, size_t max_chunk_bytes);
void Conv2dForward(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                   const float* x, const float* w, float* y, void* workspace,
                   size_t max_chunk_bytes, cudaStream_t stream, bool allow_tf32 = false,
                   GemmEpilogue epilogue = GemmEpilogue::kNone, const float* bias = nullptr);
void Conv2dBackwardData(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                        const float* dy, const float* w, float* dx, void* workspace,
                        size_t max_chunk_bytes, cudaStream_t stream, bool allow_tf32 = false);
void Conv2dBackwardFilter(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                          const float* x, const float* dy, float beta, float* dw, void* workspace,
                          size_t max_chunk_bytes, cudaStream_t stream, bool allow_tf32 = false);

}  // namespace internal
}  // namespace lockstep::kernels::cuda
