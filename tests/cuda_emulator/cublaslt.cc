// The emulated cuBLASLt (include/cublasLt.h says what it checks and computes). Each
// refusal prints why on stderr before returning its status, so the LS_CUBLAS_CHECK
// failure it causes in gemm.cc can be traced to the rule.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/cuda_emulator/runtime_internal.h"

struct cublasLtContext {
  int live = 1;
};
struct cublasLtMatmulDescOpaque_t {
  cublasComputeType_t compute;
  cublasOperation_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
};
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque_t {
  uint64_t max_workspace = 0;
  // cuBLASLt's default: algorithms may assume 256-byte aligned matrices.
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D
};

namespace {

cublasStatus_t Refuse(cublasStatus_t status, const std::string& why) {
  std::fprintf(stderr, "lsemu cuBLASLt: %s\n", why.c_str());
  return status;
}

bool HasBias(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS;
}
bool HasRelu(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_RELU || e == CUBLASLT_EPILOGUE_RELU_BIAS;
}

// The algorithm handle records what it was chosen for; Matmul checks the call against it.
struct AlgoRecord {
  uint32_t align[4];
  uint64_t workspace;
  uint64_t m, n, k;
  uint64_t problem;  // ProblemHash of the descriptors the heuristic saw
};
static_assert(sizeof(AlgoRecord) <= sizeof(cublasLtMatmulAlgo_t), "algo record too large");

// Everything else an algorithm depends on: operations, epilogue, types, leading
// dimensions, compute type, and whether the bias was 16-byte aligned (the heuristic
// reads the bias pointer's alignment).
uint64_t ProblemHash(const cublasLtMatmulDescOpaque_t* op, const cublasLtMatrixLayoutOpaque_t* a,
                     const cublasLtMatrixLayoutOpaque_t* b, const cublasLtMatrixLayoutOpaque_t* c) {
  const uint64_t fields[] = {static_cast<uint64_t>(op->trans_a), static_cast<uint64_t>(op->trans_b),
                             static_cast<uint64_t>(op->epilogue), static_cast<uint64_t>(op->compute),
                             static_cast<uint64_t>(a->type), static_cast<uint64_t>(b->type),
                             static_cast<uint64_t>(a->ld), static_cast<uint64_t>(b->ld),
                             static_cast<uint64_t>(c->ld),
                             op->bias != nullptr && reinterpret_cast<uintptr_t>(op->bias) % 16 == 0};
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
  for (uint64_t f : fields) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((f >> (8 * i)) & 0xff)) * 1099511628211ull;
  }
  return h;
}

// LOCKSTEP_EMU_CUBLASLT_NO_FUSED_EPILOGUE=1: the heuristic finds no algorithm for a
// bias or ReLU epilogue, as cuBLASLt may for some problems, so that callers' fallback
// paths run.
bool RefuseFusedEpilogues() {
  const char* v = std::getenv("LOCKSTEP_EMU_CUBLASLT_NO_FUSED_EPILOGUE");
  return v != nullptr && std::string(v) == "1";
}

// Checks the problem the descriptors describe; fills m, n, k on success.
cublasStatus_t CheckProblem(const cublasLtMatmulDescOpaque_t* op, const cublasLtMatrixLayoutOpaque_t* a,
                            const cublasLtMatrixLayoutOpaque_t* b, const cublasLtMatrixLayoutOpaque_t* c,
                            const cublasLtMatrixLayoutOpaque_t* d, uint64_t* m, uint64_t* n, uint64_t* k) {
  if (op == nullptr || a == nullptr || b == nullptr || c == nullptr || d == nullptr) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE, "a null descriptor");
  }
  const uint64_t am = op->trans_a == CUBLAS_OP_N ? a->rows : a->cols;
  const uint64_t ak = op->trans_a == CUBLAS_OP_N ? a->cols : a->rows;
  const uint64_t bk = op->trans_b == CUBLAS_OP_N ? b->rows : b->cols;
  const uint64_t bn = op->trans_b == CUBLAS_OP_N ? b->cols : b->rows;
  if (ak != bk || c->rows != am || c->cols != bn || d->rows != am || d->cols != bn) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "shapes do not match: op(A) " + std::to_string(am) + "x" + std::to_string(ak) +
                      ", op(B) " + std::to_string(bk) + "x" + std::to_string(bn) + ", C " +
                      std::to_string(c->rows) + "x" + std::to_string(c->cols) + ", D " +
                      std::to_string(d->rows) + "x" + std::to_string(d->cols));
  }
  if (a->type != b->type || c->type != CUDA_R_32F || d->type != CUDA_R_32F) {
    return Refuse(CUBLAS_STATUS_NOT_SUPPORTED, "A and B must share a type; C and D must be fp32");
  }
  if (op->compute == CUBLAS_COMPUTE_32F_FAST_TF32 && a->type != CUDA_R_32F) {
    return Refuse(CUBLAS_STATUS_NOT_SUPPORTED, "FAST_TF32 compute with non-fp32 inputs");
  }
  if (c->ld != d->ld) {
    return Refuse(CUBLAS_STATUS_NOT_SUPPORTED, "C and D in place with different ld");
  }
  *m = am;
  *n = bn;
  *k = ak;
  return CUBLAS_STATUS_SUCCESS;
}

float TypedValue(const void* p, cudaDataType_t type, uint64_t index, bool tf32) {
  if (type == CUDA_R_16BF) {
    return __bfloat162float(__ushort_as_bfloat16(static_cast<const unsigned short*>(p)[index]));
  }
  const float f = static_cast<const float*>(p)[index];
  return tf32 ? lsemu::RoundToTf32(f) : f;
}

// `outer` runs of k values of a column-major operand, contiguous: element (o, l) is at
// o + l ld when k runs along the columns, else at l + o ld.
std::vector<float> Gather(const void* p, cudaDataType_t type, uint64_t ld, bool k_along_columns,
                          uint64_t outer, uint64_t k, bool tf32) {
  std::vector<float> out(outer * k);
  for (uint64_t o = 0; o < outer; ++o) {
    for (uint64_t l = 0; l < k; ++l) {
      out[o * k + l] = TypedValue(p, type, k_along_columns ? o + l * ld : l + o * ld, tf32);
    }
  }
  return out;
}

uint32_t AlignmentOf(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

}  // namespace

const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasLtGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "success" : "refused by the emulated cuBLASLt";
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale_type) {
  if (scale_type != CUDA_R_32F) return Refuse(CUBLAS_STATUS_NOT_SUPPORTED, "scale type not fp32");
  *desc = new cublasLtMatmulDescOpaque_t{compute};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t bytes) {
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
      if (bytes != sizeof(int32_t)) return Refuse(CUBLAS_STATUS_INVALID_VALUE, "trans size");
      int32_t v;
      std::memcpy(&v, buf, bytes);
      (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->trans_a : desc->trans_b) =
          static_cast<cublasOperation_t>(v);
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
      if (bytes != sizeof(uint32_t)) return Refuse(CUBLAS_STATUS_INVALID_VALUE, "epilogue size");
      uint32_t v;
      std::memcpy(&v, buf, bytes);
      desc->epilogue = static_cast<cublasLtEpilogue_t>(v);
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (bytes != sizeof(void*)) return Refuse(CUBLAS_STATUS_INVALID_VALUE, "bias pointer size");
      std::memcpy(&desc->bias, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
  }
  return Refuse(CUBLAS_STATUS_INVALID_VALUE, "matmul attribute not emulated");
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  // Column-major: ld is the distance between columns and must cover a column.
  if (ld < 1 || static_cast<uint64_t>(ld) < rows) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE, "layout " + std::to_string(rows) + "x" +
                                                   std::to_string(cols) + " with ld " +
                                                   std::to_string(ld) + " < rows");
  }
  *layout = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  *pref = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t bytes) {
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    if (bytes != sizeof(uint64_t)) return Refuse(CUBLAS_STATUS_INVALID_VALUE, "workspace size");
    std::memcpy(&pref->max_workspace, buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  const int slot = static_cast<int>(attr) - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES;
  if (slot < 0 || slot > 3 || bytes != sizeof(uint32_t)) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE, "preference attribute not emulated");
  }
  std::memcpy(&pref->align[slot], buf, bytes);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t results[],
    int* returned) {
  if (handle == nullptr || pref == nullptr || requested < 1) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE, "heuristic arguments");
  }
  uint64_t m, n, k;
  const cublasStatus_t st = CheckProblem(op, a, b, c, d, &m, &n, &k);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (op->epilogue != CUBLASLT_EPILOGUE_DEFAULT && RefuseFusedEpilogues()) {
    *returned = 0;
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  std::memset(&results[0], 0, sizeof(results[0]));
  AlgoRecord rec{};
  std::memcpy(rec.align, pref->align, sizeof(rec.align));
  // The emulated algorithm takes up to 1 MiB of the workspace it is allowed, and
  // scribbles over it, so a workspace that overlaps live data is noticed.
  rec.workspace = pref->max_workspace < (uint64_t{1} << 20) ? pref->max_workspace : (uint64_t{1} << 20);
  rec.m = m;
  rec.n = n;
  rec.k = k;
  rec.problem = ProblemHash(op, a, b, c);
  std::memcpy(&results[0].algo, &rec, sizeof(rec));
  results[0].workspaceSize = rec.workspace;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t op, const void* alpha,
                              const void* a, cublasLtMatrixLayout_t a_layout, const void* b,
                              cublasLtMatrixLayout_t b_layout, const void* beta, const void* c,
                              cublasLtMatrixLayout_t c_layout, void* d,
                              cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (handle == nullptr || algo == nullptr) return Refuse(CUBLAS_STATUS_INVALID_VALUE, "no handle or algo");
  uint64_t m, n, k;
  const cublasStatus_t st = CheckProblem(op, a_layout, b_layout, c_layout, d_layout, &m, &n, &k);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  AlgoRecord rec;
  std::memcpy(&rec, algo, sizeof(rec));
  if (rec.m != m || rec.n != n || rec.k != k || rec.problem != ProblemHash(op, a_layout, b_layout, c_layout)) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE,
                  "algorithm chosen for another problem (size, operations, epilogue, types, ld or bias alignment)");
  }
  const void* pointers[4] = {a, b, c, d};
  const char* names[4] = {"A", "B", "C", "D"};
  for (int i = 0; i < 4; ++i) {
    if (AlignmentOf(pointers[i]) < rec.align[i]) {
      return Refuse(CUBLAS_STATUS_INVALID_VALUE,
                    std::string(names[i]) + " is " + std::to_string(AlignmentOf(pointers[i])) +
                        "-byte aligned; the algorithm was chosen for " +
                        std::to_string(rec.align[i]));
    }
  }
  if (HasBias(op->epilogue)) {
    // Not in the documentation: cuBLASLt's bias epilogue kernels fault on biases under
    // 16-byte alignment (reported by users of the API), so the emulator refuses them.
    if (op->bias == nullptr || AlignmentOf(op->bias) < 16) {
      return Refuse(CUBLAS_STATUS_INVALID_VALUE, "bias epilogue with a null or under-16-byte aligned bias");
    }
  }
  if (workspace_bytes < rec.workspace || (rec.workspace > 0 && workspace == nullptr)) {
    return Refuse(CUBLAS_STATUS_INVALID_VALUE, "less workspace than the algorithm asked for");
  }
  // Scalars are read now (host pointer mode); the matrices when the stream gets to the
  // call, as on a GPU. Descriptors may be destroyed once the call returns.
  float alpha_v, beta_v;
  std::memcpy(&alpha_v, alpha, 4);
  std::memcpy(&beta_v, beta, 4);
  const bool tf32 = op->compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  const bool trans_a = op->trans_a == CUBLAS_OP_T, trans_b = op->trans_b == CUBLAS_OP_T;
  const cudaDataType_t a_type = a_layout->type, b_type = b_layout->type;
  const uint64_t lda = static_cast<uint64_t>(a_layout->ld), ldb = static_cast<uint64_t>(b_layout->ld);
  const uint64_t ldc = static_cast<uint64_t>(c_layout->ld), ldd = static_cast<uint64_t>(d_layout->ld);
  const auto* cf = static_cast<const float*>(c);
  auto* df = static_cast<float*>(d);
  const auto* bias = static_cast<const float*>(op->bias);
  const cublasLtEpilogue_t epilogue = op->epilogue;
  const uint64_t scribbled = rec.workspace;
  lsemu::Enqueue(stream, [=] {
    if (scribbled > 0) std::memset(workspace, 0xCD, scribbled);
    // op(A) as rows of k and op(B) as columns of k, contiguous, so the k loop is tight.
    const std::vector<float> a_rows = Gather(a, a_type, lda, !trans_a, m, k, tf32);
    const std::vector<float> b_cols = Gather(b, b_type, ldb, trans_b, n, k, tf32);
    for (uint64_t j = 0; j < n; ++j) {
      const float* bj = &b_cols[j * k];
      for (uint64_t i = 0; i < m; ++i) {
        const float* ai = &a_rows[i * k];
        float acc = 0.0f;
        for (uint64_t l = 0; l < k; ++l) acc += ai[l] * bj[l];
        // beta == 0: C is not read (it may hold NaN), as in BLAS.
        float v = alpha_v * acc + (beta_v == 0.0f ? 0.0f : beta_v * cf[i + j * ldc]);
        if (HasBias(epilogue)) v += bias[i];
        if (HasRelu(epilogue)) v = v > 0.0f ? v : 0.0f;
        df[i + j * ldd] = v;
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}
