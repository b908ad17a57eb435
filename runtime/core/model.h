// Sequential model: layers in order, with every parameter and gradient living in
// one flat arena each (DESIGN decision 1). Arena order is REVERSE layer order, so
// the gradients backward produces first form a prefix [0, k) of the gradient
// arena: a DDP bucket is a byte range and can start as soon as the prefix
// covers it. Owns activation buffers sized for the largest batch seen.
// Not thread-safe: one training thread drives a model.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/core/layer.h"
#include "runtime/core/transient_arena.h"

namespace lockstep {

// One parameter tensor's place in the arenas.
struct ParamInfo {
  std::string name;     // "layer2.conv2d.kernel"
  int layer = 0;        // index into the model's layers
  Shape shape;
  int64_t offset = 0;   // elements into the arena
  ParamSpec spec;
};

class Model {
 public:
  // Builds every layer against the per-sample input shape; on a shape error the
  // message names the layer (via `layer_labels`, e.g. the recipe layer index).
  static Result<std::unique_ptr<Model>> Create(Backend* backend, Shape input_shape,
                                               std::vector<std::unique_ptr<Layer>> layers,
                                               std::vector<std::string> layer_labels = {});

  // Seeded initialisation (Glorot/He uniform from the counter-based RNG): a pure
  // function of (seed, parameter index), identical on every rank and backend.
  void InitializeParameters(uint64_t seed);

  // Runs forward on x (batch, input...) and returns a view of the output
  // (batch, output...). Valid until the next Forward.
  Tensor Forward(const StepContext& ctx, const Tensor& x);

  // Backward from d(loss)/d(output). After each layer, `on_grads_ready(prefix)` is
  // told that gradient arena elements [0, prefix) are final for this micro-batch.
  // With `dinput` (the input's shape), also d(loss)/d(input): a GAN's generator
  // learns through the discriminator's input gradient.
  void Backward(const StepContext& ctx, const Tensor& doutput,
                const std::function<void(int64_t)>& on_grads_ready = nullptr, Tensor* dinput = nullptr);

  // Takes effect at the next Forward (buffers are re-made).
  void set_activation_storage(ActivationStorage storage);
  // Bytes of activation memory held for the current capacity: the stored activations
  // plus the gradient and working buffers (not the layers' own saved activations; the
  // backend's memory_stats() counts everything).
  size_t activation_bytes() const;

  Tensor& params() { return params_; }
  Tensor& grads() { return grads_; }
  int64_t param_count() const { return params_.numel(); }
  const std::vector<ParamInfo>& param_infos() const { return param_infos_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return layers_.back()->output_shape(); }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  const Layer& layer(int i) const { return *layers_[static_cast<size_t>(i)]; }
  Backend* backend() const { return backend_; }

  // Architecture + parameter shapes, one line per layer: equal on every rank of a job.
  std::string Fingerprint() const;
  // A Keras-like summary table.
  std::string Summary() const;
  // Forward + backward FLOPs per sample (2 per multiply-add; no input gradient for layer 0).
  double TrainingFlopsPerSample() const;
  double ForwardFlopsPerSample() const;

 private:
  Model() = default;
  void EnsureCapacity(int64_t batch);
  // Per layer output: rounded to bf16, and stored in bf16 (see ActivationStorage).
  void ChooseActivationPrecision();
  // The fp32 values of activation i (`batch` rows) for backward: the stored tensor, or
  // its expansion into whichever working buffer does not hold `keep`.
  const float* Fp32Activation(int i, int64_t batch, const float* keep);

  Backend* backend_ = nullptr;
  Shape input_shape_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::string> labels_;
  std::vector<ParamInfo> param_infos_;
  std::vector<int64_t> layer_grad_end_;  // arena prefix complete after layer i's backward
  Tensor params_;
  Tensor grads_;

  ActivationStorage storage_ = ActivationStorage::kFp32;
  int64_t capacity_ = 0;
  std::vector<bool> rounded_, stored_bf16_;  // per layer output (ChooseActivationPrecision)
  std::vector<Tensor> activations_;  // activations_[i] = output of layer i (fp32 or bf16)
  Tensor grad_a_, grad_b_;           // ping-pong buffers for activation gradients
  Tensor work_a_, work_b_;           // fp32 working copies of bf16-stored activations
  Tensor last_input_;                // the input of the last Forward (for layer 0 backward)
  std::unique_ptr<TransientArena> transient_;  // layers' call-scoped scratch
};

}  // namespace lockstep
