// Backend: the op table every layer calls (DESIGN decision 2). Layer code holds
// raw device pointers and never branches on the device; a backend (CPU now,
// CUDA later) implements memory and every op. One backend per rank; called from
// the training thread only unless an op says otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/dropout.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/optimizer.h"
#include "kernels/cpu/pool.h"
#include "kernels/cpu/recurrent.h"
#include "runtime/core/tensor.h"

namespace lockstep {

using Activation = kernels::cpu::Activation;
using Conv2dShape = kernels::cpu::Conv2dShape;
using Pool2dShape = kernels::cpu::Pool2dShape;
using DropoutKey = kernels::cpu::DropoutKey;
using SgdHyper = kernels::cpu::SgdHyper;
using AdamHyper = kernels::cpu::AdamHyper;
using RecurrentStep = kernels::cpu::RecurrentStep;
using AttentionShape = kernels::cpu::AttentionShape;

// Memory held through a backend's Allocate: the CUDA backend's caching allocator (in
// use, and reserved = in use + cached), or the CPU backend's (reserved = in use).
struct BackendMemoryStats {
  size_t bytes_in_use = 0;
  size_t peak_bytes_in_use = 0;
  size_t bytes_reserved = 0;  // in use + cached for reuse
  size_t peak_bytes_reserved = 0;
};

// Elements a row-major (rows x cols) matrix with row stride ld spans in memory: its
// last row ends at its last column, not at the stride.
inline int64_t StridedExtent(int64_t rows, int64_t cols, int64_t ld) {
  return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;

  // ---- memory (device pointers) ----
  virtual void* Allocate(size_t bytes) = 0;
  virtual void Free(void* p) = 0;
  virtual void ZeroBytes(void* p, size_t bytes) = 0;
  virtual void CopyBytes(void* dst, const void* src, size_t bytes) = 0;        // device -> device
  virtual void CopyToHost(void* host_dst, const void* src, size_t bytes) = 0;    // device -> host
  virtual void CopyFromHost(void* dst, const void* host_src, size_t bytes) = 0;  // host -> device
  // host -> device without waiting for it: queued behind the work already issued, so
  // the host can go on enqueueing kernels. host_src must stay unchanged until the next
  // Synchronize() or the next call that returns a host value (a loss, a norm: those
  // wait for all queued work). From AllocateHost memory the copy is a DMA that runs
  // when its turn comes; from other memory the GPU's driver stages it before
  // returning. The CPU backend copies at once.
  virtual void CopyFromHostAsync(void* dst, const void* host_src, size_t bytes) {
    CopyFromHost(dst, host_src, bytes);
  }
  virtual void Synchronize() {}
  // Host memory the backend copies to and from fastest: page-locked on a GPU (DMA
  // without a bounce buffer), plain on the CPU. For host copies of device state that
  // are reused (checkpoint snapshots). nullptr for 0 bytes; throws std::bad_alloc.
  virtual void* AllocateHost(size_t bytes);
  virtual void FreeHost(void* p);
  virtual BackendMemoryStats memory_stats() const { return {}; }
  // The native queue the backend's work runs on (a cudaStream_t on CUDA), for
  // communicators that must order their own work after it; null on the CPU.
  virtual void* native_stream() const { return nullptr; }

  // ---- dense algebra ----
  // Row-major C = alpha op(A) op(B) + beta C (see kernels/cpu/gemm.h).
  virtual void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) = 0;
  // A right-hand operand op(B) (k x n) reused by many small-m products (an LSTM/GRU
  // recurrent kernel over T steps): GemmPackB once into a workspace of
  // GemmPackedBBytes, then GemmPackedB per step; B must stay unchanged in between.
  // The defaults keep no copy and call Gemm with the original B, so a backend need
  // not implement packing.
  struct PackedB {
    bool trans_b = false;
    int64_t n = 0, k = 0;
    const float* b = nullptr;
    int64_t ldb = 0;
    const void* packed = nullptr;  // backend-specific; null: use b
  };
  virtual size_t GemmPackedBBytes(int64_t /*n*/, int64_t /*k*/) { return 0; }
  virtual PackedB GemmPackB(bool trans_b, int64_t n, int64_t k, const float* b, int64_t ldb,
                            void* /*workspace*/) {
    return PackedB{trans_b, n, k, b, ldb, nullptr};
  }
  // C (m x n) = A (m x k, lda) op(B) + beta C.
  virtual void GemmPackedB(int64_t m, const float* a, int64_t lda, const PackedB& b, float beta, float* c,
                           int64_t ldc) {
    Gemm(false, b.trans_b, m, b.n, b.k, 1.0f, a, lda, b.b, b.ldb, beta, c, ldc);
  }
  // C (m x n, row stride n) = act(op(A) op(B) + bias): Gemm with beta 0, then
  // BiasActivation (bias may be null). A backend may fuse the two (the CUDA backend uses
  // cuBLASLt's bias / ReLU epilogues), saving a pass over C.
  virtual void GemmBiasActivation(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                                  int64_t lda, const float* b, int64_t ldb, const float* bias, Activation act,
                                  float* c) {
    Gemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
    if (bias != nullptr || act != Activation::kIdentity) BiasActivation(c, bias, m, n, act);
  }
  virtual void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) = 0;
  // y = act(y + bias) in one pass (bias may be null; act's derivative must follow from
  // its output: identity, ReLU, Tanh, Sigmoid).
  virtual void BiasActivation(float* y, const float* bias, int64_t rows, int64_t cols, Activation act) = 0;
  virtual void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta,
                            float* dbias) = 0;
  virtual void ActivationForward(Activation act, const float* x, float* y, int64_t n) = 0;
  virtual void ActivationBackward(Activation act, const float* x, const float* y, const float* dy,
                                  float* dx, int64_t n) = 0;
  virtual void Scale(float* x, int64_t n, float s) = 0;
  virtual double SumOfSquares(const float* x, int64_t n) = 0;

  // ---- bf16 activation storage (ActivationStorage::kBf16) ----
  // bits = x rounded to bf16 (nearest even), and x = those values, in one pass: the
  // fp32 working copy then holds exactly what is stored. bits may be null (round only).
  virtual void RoundToBf16Stored(float* x, uint16_t* bits, int64_t n) = 0;
  // y = the fp32 values of bf16 bits (exact).
  virtual void Bf16ToFp32(const uint16_t* bits, float* y, int64_t n) = 0;

  // ---- convolution and pooling (NHWC, HWIO filters) ----
  virtual size_t Conv2dWorkspaceBytes(const Conv2dShape& s) = 0;
  virtual void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, float* y,
                             void* workspace) = 0;
  // y = act(conv(x, w) + bias) (bias: out_c floats or null): Conv2dForward, then
  // BiasActivation over the (N * out_h * out_w, out_c) output. A backend may fuse them
  // (the CUDA backend's im2col path adds bias and ReLU in cuBLASLt's epilogue), saving a
  // pass over y.
  virtual void Conv2dForwardBiasActivation(const Conv2dShape& s, const float* x, const float* w,
                                           const float* bias, Activation act, float* y, void* workspace) {
    Conv2dForward(s, x, w, y, workspace);
    if (bias != nullptr || act != Activation::kIdentity) BiasActivation(y, bias, s.col_rows(), s.out_c, act);
  }
  virtual void Conv2dBackwardData(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                                  void* workspace) = 0;
  virtual void Conv2dBackwardFilter(const Conv2dShape& s, const float* x, const float* dy,
                                    float beta, float* dw, void* workspace) = 0;
  virtual void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y,
                                int32_t* argmax) = 0;
  virtual void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                                 float* dx) = 0;

  // ---- dropout (counter-based RNG; identical masks on every backend) ----
  virtual void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask,
                              int64_t rows, int64_t row_len, int64_t first_global_row,
                              float rate) = 0;
  virtual void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n,
                               float rate) = 0;

  // ---- losses: return the summed loss; gradients scaled by grad_scale ----
  virtual double SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                                     int64_t classes, float grad_scale, float* dlogits) = 0;
  virtual int64_t CountCorrect(const float* logits, const int32_t* labels, int64_t rows,
                               int64_t classes) = 0;
  // Both of the above on the same logits in one call (the CUDA backend: one pass, one
  // read-back). Returns the summed loss; *correct receives the count.
  virtual double SoftmaxCrossEntropyAndCorrect(const float* logits, const int32_t* labels, int64_t rows,
                                               int64_t classes, float grad_scale, float* dlogits,
                                               int64_t* correct) {
    *correct = CountCorrect(logits, labels, rows, classes);  // first: dlogits may overwrite logits
    return SoftmaxCrossEntropy(logits, labels, rows, classes, grad_scale, dlogits);
  }
  virtual double MeanSquaredError(const float* pred, const float* target, int64_t n,
                                  int64_t row_len, float grad_scale, float* dpred) = 0;
  virtual double BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                              int64_t row_len, float grad_scale,
                                              float* dlogits) = 0;

  // ---- sequence models (kernels/cpu/{embedding,layer_norm,recurrent,attention}.h) ----
  // y = a * x + y over n elements (residual connections).
  virtual void Axpy(float a, const float* x, float* y, int64_t n) = 0;
  // y (n, dim) = table[round(ids[i])]; ids are float-encoded token ids in [0, vocab).
  virtual void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab,
                                int64_t dim, float* y) = 0;
  // dtable = beta * dtable + scatter_add(ids, dy).
  virtual void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab,
                                 int64_t dim, float beta, float* dtable) = 0;
  // Over the last dim of (rows, cols); y = xhat * (1 + gamma) + beta (zero-centred gamma).
  virtual void LayerNormForward(const float* x, const float* gamma, const float* beta,
                                int64_t rows, int64_t cols, float eps, float* y, float* mean,
                                float* rstd) = 0;
  virtual void LayerNormBackward(const float* x, const float* gamma, const float* mean,
                                 const float* rstd, const float* dy, int64_t rows, int64_t cols,
                                 float grad_beta, float* dx, float* dgamma, float* dbeta) = 0;
  // One time step of the LSTM / GRU cell nonlinearities (the GEMMs are separate ops).
  // Backward's dgates may be gates and drec rec (kernels/cpu/recurrent.h).
  virtual void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c,
                               float* h, float forget_bias) = 0;
  virtual void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                                const float* c, const float* dy, int64_t dy_stride,
                                const float* dh_carry, float* dc, float* dgates) = 0;
  virtual void GruCellForward(const RecurrentStep& s, float* gates, float* rec,
                              const float* rec_bias, const float* h_prev, float* h) = 0;
  virtual void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                               const float* h_prev, const float* dy, int64_t dy_stride,
                               const float* dh_carry, float* dh_prev, float* dgates,
                               float* drec) = 0;
  // Causal multi-head attention core from a fused (Q | K | V) projection.
  virtual size_t CausalAttentionWorkspaceBytes(const AttentionShape& s) = 0;
  virtual void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs,
                                      float* out) = 0;
  virtual void CausalAttentionBackward(const AttentionShape& s, const float* qkv,
                                       const float* probs, const float* dout, float* dqkv,
                                       void* workspace) = 0;

  // ---- optimisers: one fused pass over a flat range ----
  virtual void SgdStep(const SgdHyper& h, float* param, const float* grad, float* momentum,
                       int64_t n) = 0;
  virtual void AdamStep(const AdamHyper& h, float* param, const float* grad, float* m, float* v,
                        int64_t n) = 0;
};

// Host memory from Backend::AllocateHost, grown on demand and kept for reuse.
class HostBuffer {
 public:
  explicit HostBuffer(Backend* backend) : backend_(backend) {}
  ~HostBuffer() { backend_->FreeHost(data_); }
  HostBuffer(HostBuffer&& o) noexcept : backend_(o.backend_), data_(o.data_), bytes_(o.bytes_) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  HostBuffer& operator=(HostBuffer&&) = delete;
  // At least `bytes` (contents not kept when it grows).
  void* Reserve(size_t bytes);
  // What the last Reserve returned (null before the first).
  void* data() const { return data_; }

 private:
  Backend* backend_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// The precision of GEMM inputs (training.precision). kBf16Inputs: A and B rounded to
// bfloat16 (round to nearest even), products accumulated and written in fp32;
// activations, gradients, master weights and optimiser state stay fp32. On the GPU
// that is a bf16 tensor-core GEMM; the CPU backend emulates it (rounds, then sgemm),
// which makes it the GPU's reference and lets a recipe be checked on the CPU.
// Convolutions round both operands of each pass the same way (Bf16ConvOperands).
enum class GemmPrecision { kFp32, kBf16Inputs };

std::unique_ptr<Backend> CreateCpuBackend(GemmPrecision gemm_precision = GemmPrecision::kFp32);

}  // namespace lockstep
