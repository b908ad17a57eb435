#include "runtime/core/optimizer.h"

#include <cmath>
#include <sstream>

namespace lockstep {

const char* OptimizerName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd: return "sgd";
    case OptimizerKind::kAdam: return "adam";
    case OptimizerKind::kAdamW: return "adamw";
  }
  return "?";
}

Status Optimizer::Validate(const OptimizerConfig& c) {
  if (c.momentum < 0 || c.momentum >= 1) return InvalidArgumentError("momentum must be in [0, 1)");
  if (c.nesterov && c.momentum == 0) return InvalidArgumentError("nesterov needs momentum > 0");
  if (c.beta1 < 0 || c.beta1 >= 1 || c.beta2 < 0 || c.beta2 >= 1) {
    return InvalidArgumentError("adam betas must be in [0, 1)");
  }
  if (c.epsilon <= 0) return InvalidArgumentError("epsilon must be > 0");
  if (c.weight_decay < 0) return InvalidArgumentError("weight_decay must be >= 0");
  return Status::Ok();
}

Result<std::unique_ptr<Optimizer>> Optimizer::Create(Backend* backend, const OptimizerConfig& c,
                                                     int64_t begin, int64_t end) {
  if (begin < 0 || end < begin) return InvalidArgumentError("bad optimizer range");
  LS_RETURN_IF_ERROR(Validate(c));
  auto opt = std::unique_ptr<Optimizer>(new Optimizer());
  opt->backend_ = backend;
  opt->config_ = c;
  opt->begin_ = begin;
  opt->end_ = end;
  int64_t n = end - begin;
  if (c.kind == OptimizerKind::kSgd) {
    if (c.momentum > 0) {
      opt->state_.push_back({"opt.momentum", Tensor::Zeros(*backend, {n}, DType::kFloat32)});
    }
  } else {
    opt->state_.push_back({"opt.m", Tensor::Zeros(*backend, {n}, DType::kFloat32)});
    opt->state_.push_back({"opt.v", Tensor::Zeros(*backend, {n}, DType::kFloat32)});
  }
  return opt;
}

void Optimizer::Step(float lr, float* params, const float* grads) {
  int64_t n = end_ - begin_;
  ++steps_;
  float* p = params + begin_;
  const float* g = grads + begin_;
  if (config_.kind == OptimizerKind::kSgd) {
    SgdHyper h;
    h.lr = lr;
    h.momentum = config_.momentum;
    h.weight_decay = config_.weight_decay;
    h.nesterov = config_.nesterov;
    h.first_step = steps_ == 1;
    float* buf = state_.empty() ? nullptr : state_[0].tensor.data<float>();
    backend_->SgdStep(h, p, g, buf, n);
  } else {
    AdamHyper h;
    h.lr = lr;
    h.beta1 = config_.beta1;
    h.beta2 = config_.beta2;
    h.eps = config_.epsilon;
    h.weight_decay = config_.weight_decay;
    h.decoupled = config_.kind == OptimizerKind::kAdamW;
    h.step = steps_;
    backend_->AdamStep(h, p, g, state_[0].tensor.data<float>(), state_[1].tensor.data<float>(), n);
  }
}

float LearningRateAt(const ScheduleConfig& s, int64_t step) {
  if (s.warmup_steps > 0 && step < s.warmup_steps) {
    return s.base_lr * static_cast<float>(step + 1) / static_cast<float>(s.warmup_steps);
  }
  int64_t t = step - s.warmup_steps;
  switch (s.kind) {
    case ScheduleKind::kConstant: return s.base_lr;
    case ScheduleKind::kStepDecay:
      return s.base_lr * std::pow(s.gamma, static_cast<float>(t / s.decay_steps));
    case ScheduleKind::kCosine: {
      if (t >= s.total_steps) return s.min_lr;
      double progress = static_cast<double>(t) / static_cast<double>(s.total_steps);
      return static_cast<float>(s.min_lr + 0.5 * (s.base_lr - s.min_lr) * (1.0 + std::cos(M_PI * progress)));
    }
  }
  return s.base_lr;
}

Status ValidateSchedule(const ScheduleConfig& s) {
  std::ostringstream msg;
  if (!(s.base_lr > 0)) msg << "learning_rate must be > 0 (got " << s.base_lr << ")";
  else if (s.warmup_steps < 0) msg << "warmup_steps must be >= 0";
  else if (s.kind == ScheduleKind::kStepDecay && s.decay_steps <= 0) msg << "step decay needs decay_steps > 0";
  else if (s.kind == ScheduleKind::kStepDecay && !(s.gamma > 0)) msg << "step decay needs gamma > 0";
  else if (s.kind == ScheduleKind::kCosine && s.total_steps <= 0) msg << "cosine needs total_steps > 0";
  else if (s.min_lr < 0 || s.min_lr > s.base_lr) msg << "min_lr must be in [0, learning_rate]";
  if (msg.str().empty()) return Status::Ok();
  return InvalidArgumentError(msg.str());
}

}  // namespace lockstep
