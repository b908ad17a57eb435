// Row-major GEMM on cuBLASLt (column-major): a row-major (r x c) matrix is, read
// column-major, its (c x r) transpose, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T with the operands swapped and the same trans flags. The bias
// of row-major column j is then the bias of column-major row j: exactly cuBLASLt's
// BIAS epilogue (a vector over the rows of D).
#include "kernels/cuda/gemm.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm_epilogue.h"

namespace lockstep::kernels::cuda {
namespace {

// Owners of the cuBLASLt descriptors of one call.
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// Largest power of two (<= 256) dividing the address: what the heuristic may assume.
uint32_t Alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (v % align) != 0) align /= 2;
  return align;
}

cublasLtEpilogue_t LtEpilogue(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::kNone:
      return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::kBias:
      return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::kRelu:
      return CUBLASLT_EPILOGUE_RELU;
    case GemmEpilogue::kBiasRelu:
      return CUBLASLT_EPILOGUE_RELU_BIAS;
  }
  LS_FATAL() << "Sgemm: unknown epilogue " << static_cast<int>(e);
}

bool HasBias(GemmEpilogue e) { return e == GemmEpilogue::kBias || e == GemmEpilogue::kBiasRelu; }
bool HasRelu(GemmEpilogue e) { return e == GemmEpilogue::kRelu || e == GemmEpilogue::kBiasRelu; }

// Builds the descriptors for the column-major problem D'(n x m) = op(B') op(A') and asks
// the heuristic for one algorithm with `epilogue`. False when none exists.
// `inputs` is the type of A and B (fp32, or bf16 with fp32 accumulation); C is fp32.
bool FindAlgorithm(cublasLtHandle_t lt, Descriptors& d, bool trans_a, bool trans_b, int64_t m,
                   int64_t n, int64_t k, const void* a, int64_t lda, const void* b, int64_t ldb,
                   cudaDataType_t inputs, const float* c, int64_t ldc, const GemmOptions& o,
                   GemmEpilogue epilogue, GemmWorkspace ws, cublasLtMatmulHeuristicResult_t* result) {
  const cublasComputeType_t compute =
      o.allow_tf32 && inputs == CUDA_R_32F ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  LS_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, compute, CUDA_R_32F));
  // cuBLASLt's A is our B, its B our A.
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LS_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  LS_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  const cublasLtEpilogue_t ep = LtEpilogue(epilogue);
  LS_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
  if (HasBias(epilogue)) {
    const void* bias = o.bias;
    LS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                   sizeof(bias)));
  }
  // Stored shapes, column-major: B' = our B read as (n x k) or, transposed, (k x n).
  LS_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&d.a, inputs, trans_b ? k : n, trans_b ? n : k, ldb));
  LS_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&d.b, inputs, trans_a ? m : k, trans_a ? k : m, lda));
  LS_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, n, m, ldc));

  LS_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
  const uint64_t max_ws = ws.ptr != nullptr ? ws.bytes : 0;
  LS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof(max_ws)));
  const uint32_t align_a = Alignment(b), align_b = Alignment(a), align_c = Alignment(c);
  LS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  LS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  LS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
  LS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));

  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt, d.op, d.a, d.b, d.c, d.c, d.pref, 1, result, &found);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  LS_CUBLAS_CHECK(st);
  return found > 0 && result->state == CUBLAS_STATUS_SUCCESS;
}

// A planned problem: its descriptors, the heuristic's algorithm, and the epilogue the
// GEMM itself applies (kNone when cuBLASLt had no fused algorithm for the requested one).
struct Plan {
  Descriptors d;
  cublasLtMatmulHeuristicResult_t heuristic = {};
  GemmEpilogue in_gemm = GemmEpilogue::kNone;
};

// Everything the descriptors and the heuristic's choice depend on (the bias pointer is
// re-set per call; its alignment is part of the key).
using PlanKey = std::tuple<cublasLtHandle_t, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int, int, bool, uint32_t, uint32_t, uint32_t, uint32_t, size_t>;

// Plans by problem: the heuristic query and the descriptor set-up cost tens of
// microseconds of host time, more than a small GEMM itself, and training repeats the
// same few shapes every step. Bounded: cleared when it grows past kMaxPlans.
class PlanCache {
 public:
  static constexpr size_t kMaxPlans = 1024;
  std::mutex mu;  // held from lookup to the enqueue (the bias attribute is per call)
  Plan* Find(const PlanKey& key) {
    auto it = plans_.find(key);
    return it == plans_.end() ? nullptr : it->second.get();
  }
  Plan* Insert(const PlanKey& key, std::unique_ptr<Plan> plan) {
    if (plans_.size() >= kMaxPlans) plans_.clear();
    return plans_.emplace(key, std::move(plan)).first->second.get();
  }

 private:
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
};

PlanCache& Plans() {
  static PlanCache* cache = new PlanCache();  // never destroyed: handles may outlive statics
  return *cache;
}

void Gemm(cublasLtHandle_t lt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, cudaDataType_t inputs,
          float beta, float* c, int64_t ldc, const GemmOptions& options, GemmWorkspace workspace,
          cudaStream_t stream) {
  LS_CHECK(m >= 0 && n >= 0 && k >= 0)
      << "Sgemm: negative size m=" << m << " n=" << n << " k=" << k;
  LS_CHECK(!HasBias(options.epilogue) || options.bias != nullptr)
      << "Sgemm: bias epilogue without bias";
  if (m == 0 || n == 0) return;
  LS_CHECK_GE(ldc, n) << "Sgemm: ldc too small";
  const float* bias = HasBias(options.epilogue) ? options.bias : nullptr;
  const bool relu = HasRelu(options.epilogue);
  if (k == 0) {
    internal::GemmEpilogueKernelLaunch(c, m, n, ldc, /*k_is_zero=*/true, beta, bias, relu, stream);
    return;
  }
  LS_CHECK_GE(lda, trans_a ? m : k) << "Sgemm: lda too small";
  LS_CHECK_GE(ldb, trans_b ? k : n) << "Sgemm: ldb too small";

  const size_t ws_bytes = workspace.ptr != nullptr ? workspace.bytes : 0;
  const PlanKey key{lt, trans_a, trans_b, m, n, k, lda, ldb, ldc, static_cast<int>(inputs),
                    static_cast<int>(options.epilogue), options.allow_tf32, Alignment(a), Alignment(b),
                    Alignment(c), bias != nullptr ? Alignment(bias) : 0u, ws_bytes};
  PlanCache& cache = Plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  Plan* plan = cache.Find(key);
  if (plan == nullptr) {
    auto fresh = std::make_unique<Plan>();
    // cuBLASLt takes no alignment hint for the bias and its kernels may assume 16 bytes,
    // while a parameter arena packs biases at any 4-byte offset: then the epilogue
    // kernel adds the bias (and the ReLU, which must follow it).
    fresh->in_gemm = bias != nullptr && Alignment(bias) < 16 ? GemmEpilogue::kNone : options.epilogue;
    if (!FindAlgorithm(lt, fresh->d, trans_a, trans_b, m, n, k, a, lda, b, ldb, inputs, c, ldc, options,
                       fresh->in_gemm, workspace, &fresh->heuristic)) {
      LS_CHECK(fresh->in_gemm != GemmEpilogue::kNone)
          << "Sgemm: cuBLASLt found no algorithm for m=" << m << " n=" << n << " k=" << k
          << " lda=" << lda << " ldb=" << ldb << " ldc=" << ldc << " trans_a=" << trans_a
          << " trans_b=" << trans_b;
      // No fused epilogue for this problem: plain GEMM, then the epilogue kernel.
      fresh = std::make_unique<Plan>();
      fresh->in_gemm = GemmEpilogue::kNone;
      LS_CHECK(FindAlgorithm(lt, fresh->d, trans_a, trans_b, m, n, k, a, lda, b, ldb, inputs, c, ldc,
                             options, fresh->in_gemm, workspace, &fresh->heuristic))
          << "Sgemm: cuBLASLt found no algorithm for m=" << m << " n=" << n << " k=" << k;
    }
    plan = cache.Insert(key, std::move(fresh));
  } else if (HasBias(plan->in_gemm)) {
    const void* bias_ptr = bias;
    LS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr,
                                                   sizeof(bias_ptr)));
  }
  const Descriptors& d = plan->d;
  LS_CUBLAS_CHECK(cublasLtMatmul(lt, d.op, &alpha, b, d.a, a, d.b, &beta, c, d.c, c, d.c,
                                 &plan->heuristic.algo, workspace.ptr, ws_bytes, stream));
  if (plan->in_gemm != options.epilogue) {
    internal::GemmEpilogueKernelLaunch(c, m, n, ldc, /*k_is_zero=*/false, beta, bias, relu, stream);
  }
}

}  // namespace

void Sgemm(cublasLtHandle_t lt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc, const GemmOptions& options, GemmWorkspace workspace,
           cudaStream_t stream) {
  Gemm(lt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, CUDA_R_32F, beta, c, ldc, options,
       workspace, stream);
}

void GemmBf16Inputs(cublasLtHandle_t lt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    float alpha, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                    float beta, float* c, int64_t ldc, const GemmOptions& options,
                    GemmWorkspace workspace, cudaStream_t stream) {
  Gemm(lt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, CUDA_R_16BF, beta, c, ldc, options,
       workspace, stream);
}

CublasLt::CublasLt(size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  LS_CUBLAS_CHECK(cublasLtCreate(&handle_));
  if (workspace_bytes_ > 0) LS_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

CublasLt::~CublasLt() {
  if (workspace_ != nullptr) cudaFree(workspace_);  // no check: may run during unwinding
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

}  // namespace lockstep::kernels::cuda
