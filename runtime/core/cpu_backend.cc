// The CPU backend: thin adapters from the op table to kernels/cpu.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_packed.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/loss.h"
#include "runtime/core/backend.h"
#include "runtime/core/bf16_conv_operands.h"

namespace lockstep {
namespace {

namespace k = kernels::cpu;

constexpr int64_t kPackedGemmMaxRows = 64;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(GemmPrecision precision) : bf16_inputs_(precision == GemmPrecision::kBf16Inputs) {}
  Device device() const override { return Device{DeviceKind::kCpu, 0}; }
  std::string name() const override { return "cpu"; }

  // Host memory is device memory here: 64-byte aligned (whole cache lines, AVX-512
  // loads never split), see Backend::AllocateHost. Counted, so that memory_stats() says
  // what the model, optimiser and layers hold, as the CUDA backend's allocator does.
  void* Allocate(size_t bytes) override {
    void* p = AllocateHost(bytes);
    if (p == nullptr) return p;
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = bytes;
    stats_.bytes_in_use += bytes;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    return p;
  }
  void Free(void* p) override {
    if (p == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sizes_.find(p);
      LS_CHECK(it != sizes_.end()) << "CpuBackend::Free: " << p << " was not allocated here or was freed twice";
      stats_.bytes_in_use -= it->second;
      sizes_.erase(it);
    }
    FreeHost(p);
  }
  BackendMemoryStats memory_stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    BackendMemoryStats s = stats_;
    s.bytes_reserved = s.bytes_in_use;  // nothing is cached
    s.peak_bytes_reserved = s.peak_bytes_in_use;
    return s;
  }
  void ZeroBytes(void* p, size_t bytes) override {
    if (bytes) std::memset(p, 0, bytes);
  }
  void CopyBytes(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) override { CopyBytes(dst, src, bytes); }
  void CopyFromHost(void* dst, const void* src, size_t bytes) override {
    CopyBytes(dst, src, bytes);
  }

  void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t kk, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    if (bf16_inputs_) {
      // Emulated bf16 GEMM: the inputs rounded to bf16 (exact products in fp32), fp32 sums.
      a = RoundedCopy(a, ta ? kk : m, ta ? m : kk, &lda, &bf16_a_);
      b = RoundedCopy(b, tb ? n : kk, tb ? kk : n, &ldb, &bf16_b_);
    }
    k::Sgemm(ta, tb, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  // With bf16 inputs B is rounded once, into a dense copy at the start of the
  // workspace, and that copy is packed; GemmPackedB then rounds only A.
  size_t GemmPackedBBytes(int64_t n, int64_t k) override {
    const size_t rounded = bf16_inputs_ ? static_cast<size_t>(n * k) : 0;
    return (rounded + k::PackedGemmBFloats(n, k)) * sizeof(float);
  }
  PackedB GemmPackB(bool trans_b, int64_t n, int64_t k, const float* b, int64_t ldb, void* workspace) override {
    auto* packed = static_cast<float*>(workspace);
    if (bf16_inputs_) {
      const int64_t rows = trans_b ? n : k, cols = trans_b ? k : n;
      RoundRows(b, rows, cols, ldb, packed);
      b = packed;
      ldb = cols;
      packed += n * k;
    }
    k::PackGemmB(trans_b, n, k, b, ldb, packed);
    return PackedB{trans_b, n, k, b, ldb, packed};
  }
  void GemmPackedB(int64_t m, const float* a, int64_t lda, const PackedB& b, float beta, float* c,
                   int64_t ldc) override {
    if (bf16_inputs_) a = RoundedCopy(a, m, b.k, &lda, &bf16_a_);  // b.b is rounded already
    // The packed kernel is single-threaded and wins for small m (it skips OpenBLAS's
    // per-call packing of B); otherwise, or with several BLAS threads, OpenBLAS.
    if (b.packed != nullptr && m <= kPackedGemmMaxRows && k::BlasThreads() == 1) {
      k::SgemmPackedB(m, b.n, b.k, a, lda, static_cast<const float*>(b.packed), beta, c, ldc);
    } else {
      k::Sgemm(false, b.trans_b, m, b.n, b.k, 1.0f, a, lda, b.b, b.ldb, beta, c, ldc);
    }
  }
  void RoundToBf16Stored(float* x, uint16_t* bits, int64_t n) override { k::RoundToBf16Stored(x, bits, n); }
  void Bf16ToFp32(const uint16_t* bits, float* y, int64_t n) override { k::Bf16BitsToFp32(bits, y, n); }
  void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) override {
    k::BiasAdd(y, bias, rows, cols);
  }
  void BiasActivation(float* y, const float* bias, int64_t rows, int64_t cols, Activation act) override {
    k::BiasActivationForward(y, bias, rows, cols, act);
  }
  void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta,
                    float* dbias) override {
    k::BiasBackward(dy, rows, cols, beta, dbias);
  }
  void ActivationForward(Activation act, const float* x, float* y, int64_t n) override {
    k::ActivationForward(act, x, y, n);
  }
  void ActivationBackward(Activation act, const float* x, const float* y, const float* dy,
                          float* dx, int64_t n) override {
    k::ActivationBackward(act, x, y, dy, dx, n);
  }
  void Scale(float* x, int64_t n, float s) override { k::Scale(x, n, s); }
  double SumOfSquares(const float* x, int64_t n) override { return k::SumOfSquares(x, n); }

  // With bf16 inputs each pass rounds its two operands into the front of the workspace
  // (Bf16ConvOperands) and convolves the copies.
  size_t Conv2dWorkspaceBytes(const Conv2dShape& s) override {
    const size_t rounded = bf16_inputs_ ? Bf16ConvOperands(s).bytes() : 0;
    return rounded + k::Conv2dWorkspaceFloats(s) * sizeof(float);
  }
  void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, float* y,
                     void* ws) override {
    if (bf16_inputs_) ws = Bf16ConvOperands(s).Forward(ws, &x, &w, RoundOperand);
    k::Conv2dForward(s, x, w, y, static_cast<float*>(ws));
  }
  void Conv2dBackwardData(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                          void* ws) override {
    if (bf16_inputs_) ws = Bf16ConvOperands(s).BackwardData(ws, &dy, &w, RoundOperand);
    k::Conv2dBackwardData(s, dy, w, dx, static_cast<float*>(ws));
  }
  void Conv2dBackwardFilter(const Conv2dShape& s, const float* x, const float* dy, float beta,
                            float* dw, void* ws) override {
    if (bf16_inputs_) ws = Bf16ConvOperands(s).BackwardFilter(ws, &x, &dy, RoundOperand);
    k::Conv2dBackwardFilter(s, x, dy, beta, dw, static_cast<float*>(ws));
  }
  void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) override {
    k::MaxPool2dForward(s, x, y, argmax);
  }
  void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                         float* dx) override {
    k::MaxPool2dBackward(s, dy, argmax, dx);
  }

  void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask, int64_t rows,
                      int64_t row_len, int64_t first_global_row, float rate) override {
    k::DropoutForward(key, x, y, mask, rows, row_len, first_global_row, rate);
  }
  void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n,
                       float rate) override {
    k::DropoutBackward(dy, mask, dx, n, rate);
  }

  double SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                             int64_t classes, float grad_scale, float* dlogits) override {
    return k::SoftmaxCrossEntropy(logits, labels, rows, classes, grad_scale, dlogits);
  }
  int64_t CountCorrect(const float* logits, const int32_t* labels, int64_t rows,
                       int64_t classes) override {
    return k::CountCorrect(logits, labels, rows, classes);
  }
  double MeanSquaredError(const float* pred, const float* target, int64_t n, int64_t row_len,
                          float grad_scale, float* dpred) override {
    return k::MeanSquaredError(pred, target, n, row_len, grad_scale, dpred);
  }
  double BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                      int64_t row_len, float grad_scale,
                                      float* dlogits) override {
    return k::BinaryCrossEntropyWithLogits(logits, target, n, row_len, grad_scale, dlogits);
  }

  void Axpy(float a, const float* x, float* y, int64_t n) override { k::Axpy(a, x, y, n); }
  void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab, int64_t dim,
                        float* y) override {
    k::EmbeddingForward(ids, n, table, vocab, dim, y);
  }
  void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab, int64_t dim,
                         float beta, float* dtable) override {
    k::EmbeddingBackward(ids, n, dy, vocab, dim, beta, dtable);
  }
  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int64_t cols, float eps, float* y, float* mean, float* rstd) override {
    k::LayerNormForward(x, gamma, beta, rows, cols, eps, y, mean, rstd);
  }
  void LayerNormBackward(const float* x, const float* gamma, const float* mean, const float* rstd,
                         const float* dy, int64_t rows, int64_t cols, float grad_beta, float* dx,
                         float* dgamma, float* dbeta) override {
    k::LayerNormBackward(x, gamma, mean, rstd, dy, rows, cols, grad_beta, dx, dgamma, dbeta);
  }
  void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c,
                       float* h, float forget_bias) override {
    k::LstmCellForward(s, gates, c_prev, c, h, forget_bias);
  }
  void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                        const float* c, const float* dy, int64_t dy_stride, const float* dh_carry,
                        float* dc, float* dgates) override {
    k::LstmCellBackward(s, gates, c_prev, c, dy, dy_stride, dh_carry, dc, dgates);
  }
  void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                      const float* h_prev, float* h) override {
    k::GruCellForward(s, gates, rec, rec_bias, h_prev, h);
  }
  void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                       const float* h_prev, const float* dy, int64_t dy_stride,
                       const float* dh_carry, float* dh_prev, float* dgates,
                       float* drec) override {
    k::GruCellBackward(s, gates, rec, h_prev, dy, dy_stride, dh_carry, dh_prev, dgates, drec);
  }
  size_t CausalAttentionWorkspaceBytes(const AttentionShape& s) override {
    return sizeof(float) * k::CausalAttentionWorkspaceFloats(s);
  }
  void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs,
                              float* out) override {
    k::CausalAttentionForward(s, qkv, probs, out);
  }
  void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                               const float* dout, float* dqkv, void* ws) override {
    k::CausalAttentionBackward(s, qkv, probs, dout, dqkv, static_cast<float*>(ws));
  }

  void SgdStep(const SgdHyper& h, float* p, const float* g, float* mom, int64_t n) override {
    k::SgdStep(h, p, g, mom, n);
  }
  void AdamStep(const AdamHyper& h, float* p, const float* g, float* m, float* v,
                int64_t n) override {
    k::AdamStep(h, p, g, m, v, n);
  }

 private:
  // A compact rounded copy of the (rows x cols, row stride *ld) matrix x; *ld becomes
  // cols. Only the matrix: x may be a column slice of a wider one (an LSTM step's h_{t-1}).
  static const float* RoundedCopy(const float* x, int64_t rows, int64_t cols, int64_t* ld,
                                  std::vector<float>* scratch) {
    scratch->resize(static_cast<size_t>(rows * cols));
    RoundRows(x, rows, cols, *ld, scratch->data());
    *ld = cols;
    return scratch->data();
  }
  static void RoundOperand(const float* x, float* y, int64_t n) { k::RoundToBf16(x, y, n); }
  // dst (rows x cols, dense) = x (row stride ld) rounded to bf16.
  static void RoundRows(const float* x, int64_t rows, int64_t cols, int64_t ld, float* dst) {
    if (ld == cols) return k::RoundToBf16(x, dst, rows * cols);
    for (int64_t r = 0; r < rows; ++r) k::RoundToBf16(x + r * ld, dst + r * cols, cols);
  }

  mutable std::mutex mu_;  // the training thread is the only caller today; cheap insurance
  std::unordered_map<void*, size_t> sizes_;
  BackendMemoryStats stats_;
  const bool bf16_inputs_;
  std::vector<float> bf16_a_, bf16_b_;  // rounded GEMM inputs (bf16_inputs_ only)
};

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(GemmPrecision gemm_precision) {
  return std::make_unique<CpuBackend>(gemm_precision);
}

}  // namespace lockstep
