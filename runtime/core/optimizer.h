// Optimiser over a range [begin, end) of the flat parameter arena: one fused
// pass per step (SGD with momentum/Nesterov/weight decay, Adam, AdamW). Its state
// buffers cover only that range, so ZeRO-1 gives each rank its own range.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/core/backend.h"

namespace lockstep {

enum class OptimizerKind { kSgd, kAdam, kAdamW };
const char* OptimizerName(OptimizerKind kind);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdam;
  float momentum = 0.0f;      // SGD
  bool nesterov = false;      // SGD
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-7f;  // Adam/AdamW (Keras defaults)
  float weight_decay = 0.0f;  // L2 for SGD/Adam, decoupled for AdamW
};

struct OptimizerStateBuffer {
  std::string name;  // "opt.m", "opt.v", "opt.momentum"
  Tensor tensor;     // length end - begin
};

class Optimizer {
 public:
  static Result<std::unique_ptr<Optimizer>> Create(Backend* backend, const OptimizerConfig& config,
                                                   int64_t begin, int64_t end);
  // Checks hyperparameter ranges; the message names the bad one.
  static Status Validate(const OptimizerConfig& config);
  // Updates params[begin, end) from grads[begin, end) with learning rate lr.
  void Step(float lr, float* params, const float* grads);

  const OptimizerConfig& config() const { return config_; }
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  std::vector<OptimizerStateBuffer>& state() { return state_; }

 private:
  Backend* backend_ = nullptr;
  OptimizerConfig config_;
  int64_t begin_ = 0, end_ = 0;
  int64_t steps_ = 0;
  std::vector<OptimizerStateBuffer> state_;
};

// Learning-rate schedules: constant, step decay, cosine with linear warm-up.
enum class ScheduleKind { kConstant, kStepDecay, kCosine };

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::kConstant;
  float base_lr = 0.001f;
  int64_t warmup_steps = 0;   // linear from base_lr/warmup_steps... to base_lr (all kinds)
  int64_t decay_steps = 1;    // step decay: multiply by gamma every decay_steps
  float gamma = 0.1f;
  int64_t total_steps = 0;    // cosine: steps from the end of warm-up to min_lr
  float min_lr = 0.0f;
};

// Learning rate for optimiser step `step` (0-based).
float LearningRateAt(const ScheduleConfig& s, int64_t step);
Status ValidateSchedule(const ScheduleConfig& s);

}  // namespace lockstep
