// Layer: one stage of a Sequential model. A layer declares its parameters, is
// bound to views into the model's flat parameter/gradient arenas, and runs
// forward/backward on raw device pointers through the Backend op table.
// Layers own only per-batch scratch (pool argmax, dropout mask, conv workspace).
// Not thread-safe: one training thread drives a model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/core/backend.h"
#include "runtime/core/tensor.h"

namespace lockstep {

// How a parameter is initialised (Keras defaults: Glorot-uniform kernels, zero biases).
enum class ParamInit { kZeros, kGlorotUniform, kHeUniform, kHeNormal };

struct ParamSpec {
  std::string name;  // "kernel", "bias"
  Shape shape;
  ParamInit init = ParamInit::kZeros;
  int64_t fan_in = 1;
  int64_t fan_out = 1;
};

class TransientArena;

// How the activations kept between forward and backward are held.
// kBf16 (training.precision: BF16): every layer's output is rounded to bf16, so each
// layer computes in fp32 on bf16 values, in both passes; the model's output (the
// logits) and the inputs of layers that need them exact (token ids) are not rounded.
// A rounded layer output is stored in bf16 (half the bytes) when the model's total
// activation memory shrinks by it, else in fp32: a bf16 one must be expanded into one
// of two fp32 working buffers (sized for the largest such activation) for each pass,
// so storing a model's few largest activations in bf16 can cost more than it saves.
// Layers that keep activations of their own (a transformer block, attention) keep
// them in bf16 too (SavedActivation). kBf16Everywhere: the same numerics, every
// rounded layer output stored in bf16 (tests).
enum class ActivationStorage { kFp32, kBf16, kBf16Everywhere };

// What a forward/backward call needs to know about the step it belongs to.
struct StepContext {
  Backend* backend = nullptr;
  bool training = false;
  // 0: parameter gradients are overwritten; 1: accumulated (gradient accumulation).
  float grad_beta = 0.0f;
  uint64_t seed = 0;          // recipe seed (dropout keys)
  uint64_t step = 0;          // global optimizer step x accumulation + micro step (dropout keys)
  int64_t first_global_row = 0;  // global sample index of row 0 of this micro-batch
  // Scratch that is dead when the layer call returns, shared by all layers (set by
  // Model, with a Scope around each layer call); null when a layer is driven directly.
  TransientArena* transient = nullptr;
};

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string Kind() const = 0;  // "dense", "conv2d", ...
  // Human-readable configuration for summaries and fingerprints ("units=128").
  virtual std::string Describe() const = 0;

  // Fixes the per-sample input shape; returns the per-sample output shape, or an
  // error saying why this input is impossible for this layer.
  virtual Result<Shape> Build(const Shape& input_shape) = 0;
  virtual std::vector<ParamSpec> ParamSpecs() const { return {}; }
  // Views into the arenas, in ParamSpecs() order.
  virtual void BindParams(const std::vector<Tensor>& params, const std::vector<Tensor>& grads) {
    (void)params;
    (void)grads;
  }

  // y (batch, out...) from x (batch, in...).
  virtual void Forward(const StepContext& ctx, const float* x, float* y, int64_t batch) = 0;
  // Parameter gradients (with ctx.grad_beta) and, when dx is non-null, dx.
  // x and y are the forward input and output of the same batch.
  virtual void Backward(const StepContext& ctx, const float* x, const float* y, const float* dy,
                        float* dx, int64_t batch) = 0;

  // True when the input must reach this layer unrounded (token ids): the model then
  // keeps it in fp32 even when activations are stored in bf16.
  virtual bool NeedsExactInput() const { return false; }
  // True when the output is the input's values unchanged (flatten, reshape): an exact
  // input needed after this layer is then needed before it too.
  virtual bool CopiesValues() const { return false; }
  // How to keep the activations the layer saves for its own backward (Model passes its
  // setting on; only layers with such activations care).
  virtual void SetActivationStorage(ActivationStorage storage) { (void)storage; }

  // Multiply-adds x2 per sample for forward, for the weight gradient, for the input gradient.
  virtual double ForwardFlops() const { return 0; }
  virtual double WeightGradFlops() const { return 0; }
  virtual double InputGradFlops() const { return ForwardFlops(); }

  void set_index(int index) { index_ = index; }
  int index() const { return index_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }

 protected:
  int index_ = 0;
  Shape input_shape_;
  Shape output_shape_;
};

// Per-layer scratch that grows to the largest batch seen (device memory).
class Scratch {
 public:
  void* Get(Backend& backend, size_t bytes);
  float* Floats(Backend& backend, int64_t n) {
    return static_cast<float*>(Get(backend, sizeof(float) * static_cast<size_t>(n)));
  }

 private:
  Tensor buffer_;
};

// Scratch that is dead when the layer call returns: from the model's transient arena
// when there is one, else from `fallback`.
void* TransientBytes(const StepContext& ctx, Scratch& fallback, size_t bytes);
inline float* TransientFloats(const StepContext& ctx, Scratch& fallback, int64_t n) {
  return static_cast<float*>(TransientBytes(ctx, fallback, sizeof(float) * static_cast<size_t>(n)));
}

// An activation a layer keeps for its backward. fp32: in the layer's own scratch. bf16
// (ActivationStorage other than kFp32): rounded to bf16 in place once computed (Seal),
// so the forward continues with what backward will see, and kept as bf16; the fp32
// copies (computed into, expanded for backward) come from the transient arena. Driven
// without an arena, a bf16 one is rounded in place and kept in fp32: same values.
class SavedActivation {
 public:
  void set_bf16(bool bf16) { bf16_ = bf16; }
  // fp32 memory for n floats to compute the activation into.
  float* Begin(const StepContext& ctx, int64_t n);
  // After computing it (bf16: round, keep the bits).
  void Seal(const StepContext& ctx);
  // Its fp32 values, in backward (bf16: expanded into the arena).
  const float* Get(const StepContext& ctx);
  // Its fp32 values in memory the caller may overwrite: the arena's expansion when kept
  // in bf16; null otherwise (then use Get: the kept values must not change).
  float* ExpandForOverwrite(const StepContext& ctx);
  // Values [begin, begin + count) as fp32 into dst (backend memory), without expanding
  // the rest.
  void CopyOut(const StepContext& ctx, int64_t begin, int64_t count, float* dst);

 private:
  bool Packed(const StepContext& ctx) const { return bf16_ && ctx.transient != nullptr; }
  const uint16_t* Bits(Backend& backend) {
    return static_cast<const uint16_t*>(bits_.Get(backend, sizeof(uint16_t) * static_cast<size_t>(n_)));
  }
  bool bf16_ = false;
  int64_t n_ = 0;
  float* working_ = nullptr;
  Scratch fp32_, bits_;
};

// The bias + fused-activation epilogue shared by Dense and Conv2D: forward applies
// act(y + bias) in place; backward turns dy into d(pre-activation) (in scratch when
// the activation is not the identity: call-scoped, TransientFloats) and returns the
// pointer to use.
class FusedEpilogue {
 public:
  explicit FusedEpilogue(Activation act) : act_(act) {}
  void Forward(Backend& backend, float* y, const float* bias, int64_t rows, int64_t cols);
  const float* Backward(const StepContext& ctx, const float* y, const float* dy, int64_t n);
  Activation activation() const { return act_; }
  std::string Describe() const;

 private:
  Activation act_;
  Scratch dz_;
};

// ---- factories (layers.cc, conv_layers.cc) ----
// `activation` is fused into the layer (one pass with the bias add; backward from the
// output). Only activations whose derivative follows from the output can be fused
// (identity, ReLU, Tanh, Sigmoid); use MakeActivation for GELU.
std::unique_ptr<Layer> MakeDense(int64_t units, bool use_bias,
                                 ParamInit init = ParamInit::kGlorotUniform,
                                 Activation activation = Activation::kIdentity);
bool CanFuseActivation(Activation act);
std::unique_ptr<Layer> MakeActivation(Activation act);
std::unique_ptr<Layer> MakeFlatten();
std::unique_ptr<Layer> MakeDropout(float rate);

struct Conv2dOptions {
  int64_t filters = 1;
  int64_t kernel_h = 3, kernel_w = 3;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  bool use_bias = true;
  ParamInit init = ParamInit::kGlorotUniform;
  Activation activation = Activation::kIdentity;  // fused, see MakeDense
};
std::unique_ptr<Layer> MakeConv2d(const Conv2dOptions& options);

struct Pool2dOptions {
  int64_t window_h = 2, window_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t pad_h = 0, pad_w = 0;
};
std::unique_ptr<Layer> MakeMaxPool2d(const Pool2dOptions& options);

const char* ActivationName(Activation act);

}  // namespace lockstep
