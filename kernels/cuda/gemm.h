// Dense matrix multiply on the GPU through cuBLASLt with the row-major semantics of
// kernels/cpu/gemm.h, plus the bias / ReLU epilogues cuBLASLt can fuse. Pointers are
// device memory. A cublasLtHandle_t may be shared by threads; a workspace must not be
// used by two streams at once. Ordering is the stream's.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cuda {

// Applied after alpha * op(A) op(B) + beta * C: bias[c] added to column c of row-major
// C, then ReLU. The same result as cpu::Sgemm followed by cpu::BiasActivationForward.
enum class GemmEpilogue { kNone, kBias, kRelu, kBiasRelu };

struct GemmOptions {
  GemmEpilogue epilogue = GemmEpilogue::kNone;
  const float* bias = nullptr;  // (n), needed by kBias and kBiasRelu
  // TF32 tensor cores (10-bit mantissa products): faster, ~1e-3 relative error.
  bool allow_tf32 = false;
};

struct GemmWorkspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// C (m, n; row stride ldc) = epilogue(alpha * op(A) * op(B) + beta * C), all row-major.
// op(A) is (m, k): A is (m, k) with lda >= k, or (k, m) with lda >= m when trans_a.
// op(B) is (k, n): B is (k, n) with ldb >= n, or (n, k) with ldb >= k when trans_b.
// beta == 0 overwrites C (stale NaNs do not survive). k == 0 gives beta * C (+ epilogue).
// When cuBLASLt has no fused algorithm for the epilogue, a separate kernel applies it.
void Sgemm(cublasLtHandle_t lt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc, const GemmOptions& options, GemmWorkspace workspace,
           cudaStream_t stream);

// The same with A and B in bfloat16 (bit patterns as convert.h writes them; the same
// strides, in elements): bf16 tensor-core products, fp32 accumulation, fp32 C. Row
// strides of 8 elements or more multiples of 8 let cuBLASLt use its fastest kernels.
void GemmBf16Inputs(cublasLtHandle_t lt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    float alpha, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                    float beta, float* c, int64_t ldc, const GemmOptions& options,
                    GemmWorkspace workspace, cudaStream_t stream);

// A cuBLASLt handle and a device workspace for it (32 MiB, what cuBLAS suggests for
// Hopper), created on the current device. Aborts (LS_CUBLAS_CHECK / LS_CUDA_CHECK) when
// either cannot be created. Not copyable.
class CublasLt {
 public:
  explicit CublasLt(size_t workspace_bytes = size_t{32} << 20);
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  cublasLtHandle_t handle() const { return handle_; }
  GemmWorkspace workspace() const { return {workspace_, workspace_bytes_}; }

 private:
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

}  // namespace lockstep::kernels::cuda
