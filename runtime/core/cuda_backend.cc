// The CUDA backend: thin adapters from the op table to kernels/cuda, all on one
// compute stream. Scratch (loss and reduction workspaces) comes from the caching
// allocator per call and goes back to it at once: the allocator reuses blocks in
// stream order, so a later op may take the block while this op's kernel still
// runs ahead of it on the same stream.
#include "runtime/core/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <iostream>
#include <new>
#include <optional>
#include <set>
#include <string>

#include "common/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/dropout.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/loss.h"
#include "kernels/cuda/optimizer.h"
#include "kernels/cuda/pool.h"
#include "kernels/cuda/recurrent.h"
#include "kernels/cuda/reduce.h"
#include "kernels/cuda/regression_loss.h"
#include "runtime/core/bf16_conv_operands.h"
#if LOCKSTEP_HAVE_CUDNN
#include "kernels/cuda/cudnn_conv.h"
#endif

namespace lockstep {
namespace {

namespace kc = kernels::cuda;

// Per-call scratch from the allocator, returned when the scope ends (stream-ordered).
class Scratch {
 public:
  Scratch(kc::CachingAllocator& alloc, size_t bytes) : alloc_(alloc), ptr_(alloc.Allocate(bytes)) {}
  ~Scratch() { alloc_.Free(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return ptr_; }

 private:
  kc::CachingAllocator& alloc_;
  void* ptr_;
};

// Rounds a convolution operand to bf16 (kept in fp32) on a stream (Bf16ConvOperands).
struct Bf16Rounder {
  cudaStream_t stream;
  void operator()(const float* x, float* y, int64_t n) const { kc::RoundToBf16(x, y, n, stream); }
};

// A compact bf16 copy (row stride kc::Bf16RowStride(cols)) of a row-major fp32 matrix,
// converted on the stream at construction; scratch like Scratch.
class Bf16Copy {
 public:
  Bf16Copy(kc::CachingAllocator& alloc, int64_t rows, int64_t cols, const float* x, int64_t ldx,
           cudaStream_t stream)
      : ld_(kc::Bf16RowStride(cols)), scratch_(alloc, static_cast<size_t>(rows * ld_) * sizeof(uint16_t)) {
    kc::Fp32ToBf16Matrix(x, rows, cols, ldx, data(), ld_, stream);
  }
  uint16_t* data() const { return static_cast<uint16_t*>(scratch_.get()); }
  int64_t ld() const { return ld_; }

 private:
  int64_t ld_;
  Scratch scratch_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {
    LS_CUDA_CHECK(cudaSetDevice(options_.device));
    LS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    lt_.emplace();
    allocator_.emplace(kc::CudaRawMemory(stream_));
    host_scalars_ = AllocateHost(kScalarBytes);
    device_scalars_ = allocator_->Allocate(kScalarBytes);
#if LOCKSTEP_HAVE_CUDNN
    if (options_.conv != CudaBackendOptions::ConvPath::kIm2col) {
      cudnn_.emplace(options_.deterministic, /*allow_tf32=*/Bf16Gemms());
    }
#else
    LS_CHECK(options_.conv != CudaBackendOptions::ConvPath::kCudnn)
        << "CUDA backend: the cuDNN convolution path was asked for, but this build has no cuDNN";
#endif
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    allocator_->Free(device_scalars_);
#if LOCKSTEP_HAVE_CUDNN
    cudnn_.reset();
#endif
    lt_.reset();
    cudaFreeHost(host_scalars_);  // not FreeHost: its check must not abort during teardown
    allocator_.reset();  // gives every cached block back
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device{DeviceKind::kCuda, options_.device}; }
  void* native_stream() const override { return stream_; }
  std::string name() const override { return "cuda:" + std::to_string(options_.device); }

  // ---- memory ----
  void* Allocate(size_t bytes) override { return allocator_->Allocate(bytes); }
  void Free(void* p) override { allocator_->Free(p); }
  void ZeroBytes(void* p, size_t bytes) override {
    if (bytes) LS_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
  }
  void CopyBytes(void* dst, const void* src, size_t bytes) override {
    if (bytes) LS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  // Host copies wait for the stream: the host buffer is free to reuse (or read) on return.
  void CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    LS_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    Synchronize();
  }
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) override {
    if (bytes == 0) return;
    LS_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    Synchronize();
  }
  void CopyFromHostAsync(void* dst, const void* host_src, size_t bytes) override {
    if (bytes == 0) return;
    LS_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void Synchronize() override { LS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void* AllocateHost(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::bad_alloc();
    }
    return p;
  }
  void FreeHost(void* p) override {
    if (p != nullptr) LS_CUDA_CHECK(cudaFreeHost(p));
  }
  BackendMemoryStats memory_stats() const override {
    const kc::AllocatorStats s = allocator_->stats();
    return BackendMemoryStats{s.bytes_in_use, s.peak_bytes_in_use, s.bytes_reserved,
                              s.peak_bytes_reserved};
  }

  // ---- dense algebra ----
  void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    GemmWith(kc::GemmOptions{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  // With bf16 GEMMs, a recurrent kernel B is converted once per sequence (GemmPackB)
  // instead of at every time step; fp32 keeps Backend's defaults (no copy).
  size_t GemmPackedBBytes(int64_t n, int64_t k) override {
    if (!Bf16Gemms()) return 0;
    return static_cast<size_t>(std::max(n * kc::Bf16RowStride(k), k * kc::Bf16RowStride(n))) * sizeof(uint16_t);
  }
  PackedB GemmPackB(bool trans_b, int64_t n, int64_t k, const float* b, int64_t ldb, void* workspace) override {
    if (!Bf16Gemms()) return Backend::GemmPackB(trans_b, n, k, b, ldb, workspace);
    const int64_t rows = trans_b ? n : k, cols = trans_b ? k : n;
    kc::Fp32ToBf16Matrix(b, rows, cols, ldb, static_cast<uint16_t*>(workspace), kc::Bf16RowStride(cols), stream_);
    return PackedB{trans_b, n, k, b, ldb, workspace};
  }
  void GemmPackedB(int64_t m, const float* a, int64_t lda, const PackedB& b, float beta, float* c,
                   int64_t ldc) override {
    if (b.packed == nullptr) return Backend::GemmPackedB(m, a, lda, b, beta, c, ldc);
    Bf16Copy a16(*allocator_, m, b.k, a, lda, stream_);
    const int64_t ld16 = kc::Bf16RowStride(b.trans_b ? b.k : b.n);
    kc::GemmBf16Inputs(lt_->handle(), false, b.trans_b, m, b.n, b.k, 1.0f, a16.data(), a16.ld(),
                       static_cast<const uint16_t*>(b.packed), ld16, beta, c, ldc, kc::GemmOptions{},
                       lt_->workspace(), stream_);
  }
  // Bias and ReLU go into cuBLASLt's epilogue (it falls back to a separate kernel when
  // it has no fused algorithm for a shape); tanh and sigmoid stay a separate pass.
  void GemmBiasActivation(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                          const float* b, int64_t ldb, const float* bias, Activation act, float* c) override {
    if (act != Activation::kIdentity && act != Activation::kRelu) {
      return Backend::GemmBiasActivation(ta, tb, m, n, k, a, lda, b, ldb, bias, act, c);
    }
    kc::GemmOptions opt;
    opt.bias = bias;
    opt.epilogue = Epilogue(bias, act == Activation::kRelu);
    GemmWith(opt, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
  }
  void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols) override {
    kc::BiasAdd(y, bias, rows, cols, stream_);
  }
  void BiasActivation(float* y, const float* bias, int64_t rows, int64_t cols, Activation act) override {
    kc::BiasActivationForward(y, bias, rows, cols, act, stream_);
  }
  void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta, float* dbias) override {
    Scratch ws(*allocator_, kc::BiasBackwardWorkspaceBytes(rows, cols));
    kc::BiasBackward(dy, rows, cols, beta, dbias, ws.get(), stream_);
  }
  void ActivationForward(Activation act, const float* x, float* y, int64_t n) override {
    kc::ActivationForward(act, x, y, n, stream_);
  }
  void ActivationBackward(Activation act, const float* x, const float* y, const float* dy,
                          float* dx, int64_t n) override {
    kc::ActivationBackward(act, x, y, dy, dx, n, stream_);
  }
  void Scale(float* x, int64_t n, float s) override { kc::Scale(x, n, s, stream_); }
  void RoundToBf16Stored(float* x, uint16_t* bits, int64_t n) override {
    kc::RoundToBf16Stored(x, bits, n, stream_);
  }
  void Bf16ToFp32(const uint16_t* bits, float* y, int64_t n) override { kc::Bf16ToFp32(bits, y, n, stream_); }
  double SumOfSquares(const float* x, int64_t n) override {
    Scratch ws(*allocator_, static_cast<size_t>(kc::SumOfSquaresWorkspaceElems(n)) * sizeof(double));
    kc::SumOfSquares(x, n, DeviceDouble(), static_cast<double*>(ws.get()), stream_);
    return ReadDouble();
  }

  // ---- convolution and pooling ----
  // With bf16 GEMM inputs each pass rounds its two operands into the front of the
  // workspace (Bf16ConvOperands) and convolves the copies on TF32 tensor cores, which
  // hold bf16 values exactly (cuDNN without its FFT and Winograd algorithms).
  size_t Conv2dWorkspaceBytes(const Conv2dShape& s) override {
    const size_t rounded = Bf16Gemms() ? Bf16ConvOperands(s).bytes() : 0;
#if LOCKSTEP_HAVE_CUDNN
    if (UseCudnn(s)) return rounded + cudnn_->WorkspaceBytes(s);
#endif
    return rounded + kc::Conv2dWorkspaceBytes(s);
  }
  void Conv2dForward(const Conv2dShape& s, const float* x, const float* w, float* y,
                     void* ws) override {
    ConvForward(s, x, w, nullptr, /*relu=*/false, y, ws);
  }
  // The im2col path adds bias and ReLU in its GEMMs' epilogue; cuDNN (whose fused
  // cudnnConvolutionBiasActivationForward is not used) and other activations take the
  // separate pass.
  void Conv2dForwardBiasActivation(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                                   Activation act, float* y, void* ws) override {
    if (CudnnPath(s) || (act != Activation::kIdentity && act != Activation::kRelu)) {
      return Backend::Conv2dForwardBiasActivation(s, x, w, bias, act, y, ws);
    }
    ConvForward(s, x, w, bias, act == Activation::kRelu, y, ws);
  }
  void Conv2dBackwardData(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                          void* ws) override {
    if (Bf16Gemms()) ws = Bf16ConvOperands(s).BackwardData(ws, &dy, &w, Bf16Rounder{stream_});
#if LOCKSTEP_HAVE_CUDNN
    if (UseCudnn(s)) return cudnn_->BackwardData(s, dy, w, dx, ws, stream_);
#endif
    kc::Conv2dBackwardData(lt_->handle(), lt_->workspace(), s, dy, w, dx, ws, stream_, Bf16Gemms());
  }
  void Conv2dBackwardFilter(const Conv2dShape& s, const float* x, const float* dy, float beta,
                            float* dw, void* ws) override {
    if (Bf16Gemms()) ws = Bf16ConvOperands(s).BackwardFilter(ws, &x, &dy, Bf16Rounder{stream_});
#if LOCKSTEP_HAVE_CUDNN
    if (UseCudnn(s)) return cudnn_->BackwardFilter(s, x, dy, beta, dw, ws, stream_);
#endif
    kc::Conv2dBackwardFilter(lt_->handle(), lt_->workspace(), s, x, dy, beta, dw, ws, stream_, Bf16Gemms());
  }
  void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax) override {
    kc::MaxPool2dForward(s, x, y, argmax, stream_);
  }
  void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                         float* dx) override {
    kc::MaxPool2dBackward(s, dy, argmax, dx, stream_);
  }

  // ---- dropout ----
  void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask, int64_t rows,
                      int64_t row_len, int64_t first_global_row, float rate) override {
    kc::DropoutForward(key, x, y, mask, rows, row_len, first_global_row, rate, stream_);
  }
  void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n,
                       float rate) override {
    kc::DropoutBackward(dy, mask, dx, n, rate, stream_);
  }

  // ---- losses ----
  // All three run the one fused kernel; `correct` null skips the count.
  double SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows,
                             int64_t classes, float grad_scale, float* dlogits) override {
    return SoftmaxCrossEntropyAndCorrect(logits, labels, rows, classes, grad_scale, dlogits, nullptr);
  }
  int64_t CountCorrect(const float* logits, const int32_t* labels, int64_t rows,
                       int64_t classes) override {
    int64_t correct = 0;
    SoftmaxCrossEntropyAndCorrect(logits, labels, rows, classes, 0.0f, nullptr, &correct);
    return correct;
  }
  double SoftmaxCrossEntropyAndCorrect(const float* logits, const int32_t* labels, int64_t rows, int64_t classes,
                                       float grad_scale, float* dlogits, int64_t* correct) override {
    Scratch ws(*allocator_, kc::SoftmaxCrossEntropyWorkspaceBytes(rows));
    kc::SoftmaxCrossEntropy(logits, labels, rows, classes, grad_scale, dlogits, DeviceDouble(),
                            correct != nullptr ? DeviceInt64() : nullptr, ws.get(), stream_);
    const double loss = ReadDouble();
    if (correct != nullptr) *correct = static_cast<const int64_t*>(host_scalars_)[1];
    return loss;
  }
  double MeanSquaredError(const float* pred, const float* target, int64_t n, int64_t row_len,
                          float grad_scale, float* dpred) override {
    Scratch ws(*allocator_, kc::RegressionLossWorkspaceBytes(n, row_len));
    kc::MeanSquaredError(pred, target, n, row_len, grad_scale, dpred, DeviceDouble(), ws.get(),
                         stream_);
    return ReadDouble();
  }
  double BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                      int64_t row_len, float grad_scale, float* dlogits) override {
    Scratch ws(*allocator_, kc::RegressionLossWorkspaceBytes(n, row_len));
    kc::BinaryCrossEntropyWithLogits(logits, target, n, row_len, grad_scale, dlogits,
                                     DeviceDouble(), ws.get(), stream_);
    return ReadDouble();
  }

  // ---- sequence models ----
  void Axpy(float a, const float* x, float* y, int64_t n) override { kc::Axpy(a, x, y, n, stream_); }
  void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab, int64_t dim,
                        float* y) override {
    kc::EmbeddingForward(ids, n, table, vocab, dim, y, stream_);
  }
  void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab, int64_t dim,
                         float beta, float* dtable) override {
    Scratch ws(*allocator_, kc::EmbeddingBackwardWorkspaceBytes(n, vocab));
    kc::EmbeddingBackward(ids, n, dy, vocab, dim, beta, dtable, ws.get(), stream_);
  }
  void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                        int64_t cols, float eps, float* y, float* mean, float* rstd) override {
    kc::LayerNormForward(x, gamma, beta, rows, cols, eps, y, mean, rstd, stream_);
  }
  void LayerNormBackward(const float* x, const float* gamma, const float* mean, const float* rstd,
                         const float* dy, int64_t rows, int64_t cols, float grad_beta, float* dx,
                         float* dgamma, float* dbeta) override {
    Scratch ws(*allocator_, kc::LayerNormBackwardWorkspaceBytes(rows, cols));
    kc::LayerNormBackward(x, gamma, mean, rstd, dy, rows, cols, grad_beta, dx, dgamma, dbeta,
                          ws.get(), stream_);
  }
  void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c,
                       float* h, float forget_bias) override {
    kc::LstmCellForward(s, gates, c_prev, c, h, forget_bias, stream_);
  }
  void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                        const float* c, const float* dy, int64_t dy_stride, const float* dh_carry,
                        float* dc, float* dgates) override {
    kc::LstmCellBackward(s, gates, c_prev, c, dy, dy_stride, dh_carry, dc, dgates, stream_);
  }
  void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                      const float* h_prev, float* h) override {
    kc::GruCellForward(s, gates, rec, rec_bias, h_prev, h, stream_);
  }
  void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                       const float* h_prev, const float* dy, int64_t dy_stride,
                       const float* dh_carry, float* dh_prev, float* dgates, float* drec) override {
    kc::GruCellBackward(s, gates, rec, h_prev, dy, dy_stride, dh_carry, dh_prev, dgates, drec,
                        stream_);
  }
  size_t CausalAttentionWorkspaceBytes(const AttentionShape& s) override {
    return kc::CausalAttentionWorkspaceBytes(s);
  }
  void CausalAttentionForward(const AttentionShape& s, const float* qkv, float* probs,
                              float* out) override {
    kc::CausalAttentionForward(s, qkv, probs, out, stream_);
  }
  void CausalAttentionBackward(const AttentionShape& s, const float* qkv, const float* probs,
                               const float* dout, float* dqkv, void* ws) override {
    kc::CausalAttentionBackward(s, qkv, probs, dout, dqkv, ws, stream_);
  }

  // ---- optimisers ----
  void SgdStep(const SgdHyper& h, float* p, const float* g, float* mom, int64_t n) override {
    kc::SgdStep(h, p, g, mom, n, stream_);
  }
  void AdamStep(const AdamHyper& h, float* p, const float* g, float* m, float* v,
                int64_t n) override {
    kc::AdamStep(h, p, g, m, v, n, stream_);
  }

 private:
  // GEMM with `opt`'s epilogue, on fp32 or bf16 inputs (options_.gemm_precision).
  void GemmWith(kc::GemmOptions opt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    opt.allow_tf32 = options_.allow_tf32;
    if (Bf16Gemms()) {
      // Both inputs converted to compact bf16 copies (16-byte rows), then a bf16
      // tensor-core GEMM.
      Bf16Copy a16(*allocator_, ta ? k : m, ta ? m : k, a, lda, stream_);
      Bf16Copy b16(*allocator_, tb ? n : k, tb ? k : n, b, ldb, stream_);
      kc::GemmBf16Inputs(lt_->handle(), ta, tb, m, n, k, alpha, a16.data(), a16.ld(), b16.data(), b16.ld(), beta, c,
                         ldc, opt, lt_->workspace(), stream_);
      return;
    }
    kc::Sgemm(lt_->handle(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, opt, lt_->workspace(), stream_);
  }

  bool Bf16Gemms() const { return options_.gemm_precision == GemmPrecision::kBf16Inputs; }
  // Whether s runs through cuDNN (else im2col + cuBLASLt).
  bool CudnnPath(const Conv2dShape& s) {
#if LOCKSTEP_HAVE_CUDNN
    return UseCudnn(s);
#else
    (void)s;
    return false;
#endif
  }
  // y = conv(x, w), with bias and ReLU in the GEMM epilogue (im2col path only).
  void ConvForward(const Conv2dShape& s, const float* x, const float* w, const float* bias, bool relu, float* y,
                   void* ws) {
    if (Bf16Gemms()) ws = Bf16ConvOperands(s).Forward(ws, &x, &w, Bf16Rounder{stream_});
#if LOCKSTEP_HAVE_CUDNN
    if (UseCudnn(s)) {
      LS_CHECK(bias == nullptr && !relu) << "cuDNN convolutions take no epilogue";
      return cudnn_->Forward(s, x, w, y, ws, stream_);
    }
#endif
    kc::Conv2dForward(lt_->handle(), lt_->workspace(), s, x, w, y, ws, stream_, Bf16Gemms(), Epilogue(bias, relu),
                      bias);
  }
  // The GEMM epilogue for an optional bias and ReLU.
  static kc::GemmEpilogue Epilogue(const float* bias, bool relu) {
    if (bias != nullptr) return relu ? kc::GemmEpilogue::kBiasRelu : kc::GemmEpilogue::kBias;
    return relu ? kc::GemmEpilogue::kRelu : kc::GemmEpilogue::kNone;
  }

#if LOCKSTEP_HAVE_CUDNN
  // cuDNN for s when it has usable algorithms (deterministic ones in deterministic mode);
  // else this shape goes through im2col + cuBLASLt, said once per shape on stderr.
  bool UseCudnn(const Conv2dShape& s) {
    if (!cudnn_) return false;
    std::string why;
    if (cudnn_->Supports(s, &why)) return true;
    if (im2col_fallbacks_.insert(why).second) {
      std::cerr << "lockstep: cuDNN: " << why << "; this convolution uses im2col + cuBLASLt instead" << std::endl;
    }
    return false;
  }
  std::set<std::string> im2col_fallbacks_;  // the reasons already said
#endif

  // Device scalars: [0] a double (loss or sum), [1] an int64 (correct count).
  static constexpr size_t kScalarBytes = 2 * sizeof(double);
  double* DeviceDouble() { return static_cast<double*>(device_scalars_); }
  int64_t* DeviceInt64() { return static_cast<int64_t*>(device_scalars_) + 1; }
  void Fetch() {
    LS_CUDA_CHECK(cudaMemcpyAsync(host_scalars_, device_scalars_, kScalarBytes,
                                  cudaMemcpyDeviceToHost, stream_));
    Synchronize();
  }
  double ReadDouble() {
    Fetch();
    return static_cast<const double*>(host_scalars_)[0];
  }

  CudaBackendOptions options_;
  cudaStream_t stream_ = nullptr;
  std::optional<kc::CublasLt> lt_;
  std::optional<kc::CachingAllocator> allocator_;
#if LOCKSTEP_HAVE_CUDNN
  std::optional<kc::CudnnConvolution> cudnn_;
#endif
  void* host_scalars_ = nullptr;    // pinned, kScalarBytes
  void* device_scalars_ = nullptr;  // kScalarBytes
};

}  // namespace

bool CudaBackendAvailable(std::string* why_not) {
  std::string reason;
  if (kernels::cuda::UsableDeviceCount(&reason) > 0) return true;
  if (why_not != nullptr) *why_not = reason;
  return false;
}

Result<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& requested) {
  std::string reason;
  const int devices = kernels::cuda::UsableDeviceCount(&reason);
  if (devices == 0) return UnavailableError("no usable CUDA device: " + reason);
  CudaBackendOptions options = requested;
  if (options.device == -1) options.device = std::max(0, options.local_rank) % devices;
  if (options.device < 0 || options.device >= devices) {
    return InvalidArgumentError("CUDA device " + std::to_string(options.device) + " asked for, but " +
                                std::to_string(devices) + " device(s) are visible");
  }
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(options));
}

}  // namespace lockstep
