// The trainer's side of checkpoints: what the training state is (parameters,
// optimiser state and step count; the data order, dropout masks and schedule are
// pure functions of the step, so no generator state needs saving), when to save,
// and how to resume -- onto any number of ranks, since every rank reads exactly
// the element ranges it now owns from whichever shards hold them.
#include <cstdio>
#include <map>
#include <ctime>

#include "common/fnv.h"
#include "common/log.h"
#include "common/sysinfo.h"
#include "training/comm_coordinator.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

const char* ScheduleName(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kStepDecay: return "step_decay";
    case ScheduleKind::kCosine: return "cosine";
  }
  return "?";
}

}  // namespace

Status Trainer::SetUpCheckpoints() {
  const config::Checkpoint& c = recipe_.recipe.checkpoint();
  const std::string where = recipe_.path + ": checkpoint.";
  if (c.every_steps() < 0) return InvalidArgumentError(where + "every_steps must be >= 0");
  if (c.every_seconds() < 0) return InvalidArgumentError(where + "every_seconds must be >= 0");
  if (c.keep_last() < 0) return InvalidArgumentError(where + "keep_last must be >= 0");
  if (c.keep_every_steps() < 0) return InvalidArgumentError(where + "keep_every_steps must be >= 0");
  if (c.timeout_seconds() <= 0) return InvalidArgumentError(where + "timeout_seconds must be > 0");
  const bool resume_from_dir = options_.resume != "auto" && options_.resume != "none";
  if (options_.run_dir.empty() && !resume_from_dir) return Status::Ok();

  // Checkpoint traffic gets its own communicator (and, under MPI, its own thread), so
  // the service thread's gathers never interleave with gradient collectives.
  LS_ASSIGN_OR_RETURN(std::unique_ptr<comm::Communicator> dup, comm_->Duplicate("checkpoint"));
  checkpoint_coordinator_ = std::make_unique<CommCoordinator>(std::move(dup));
  LS_ASSIGN_OR_RETURN(checkpoint_fs_, ckpt::MakeFileSystemFromEnv(rank_));
  last_checkpoint_time_ = NowSeconds();
  if (options_.run_dir.empty()) return Status::Ok();

  if (rank_ == 0) {
    // Shards of a save that never committed (the job was killed mid-save).
    Status cleaned = ckpt::RemoveStaleTemporaries(options_.run_dir, checkpoint_fs_.get());
    if (!cleaned.ok()) {
      LS_LOG(WARNING) << "cannot remove stale checkpoint temporaries: " << cleaned.message();
    }
  }
  ckpt::WriterOptions wo;
  wo.run_dir = options_.run_dir;
  wo.fs = checkpoint_fs_.get();
  wo.coordinator = checkpoint_coordinator_.get();
  wo.retention.keep_last = c.keep_last();
  wo.retention.keep_every_steps = c.keep_every_steps();
  wo.deadline = CheckpointDeadline();
  LS_ASSIGN_OR_RETURN(checkpoint_service_, ckpt::CheckpointService::Create(wo, c.async()));
  return Status::Ok();
}

std::chrono::milliseconds Trainer::CheckpointDeadline() const {
  return std::chrono::milliseconds(static_cast<int64_t>(recipe_.recipe.checkpoint().timeout_seconds() * 1000.0));
}

Status Trainer::Resume() {
  if (options_.resume == "none" || !checkpoint_coordinator_) return Status::Ok();
  const std::chrono::milliseconds deadline = CheckpointDeadline();
  // Rank 0 chooses ("" = start fresh, "D<dir>", "E<error>"); every rank follows.
  std::string decision;
  if (rank_ == 0) {
    if (options_.resume == "auto") {
      std::vector<std::string> warnings;
      auto found = ckpt::FindLatestValidCheckpoint(options_.run_dir, &warnings, checkpoint_fs_.get());
      for (const std::string& w : warnings) LS_LOG(WARNING) << w;
      if (!found.ok()) {
        decision = "E" + found.status().message();
      } else if (found->has_value()) {
        decision = "D" + found->value();
      }
    } else {
      Status verified = ckpt::VerifyCheckpoint(options_.resume, true, checkpoint_fs_.get());
      decision = verified.ok() ? "D" + options_.resume
                               : "E--resume " + options_.resume + ": " + verified.message();
    }
  }
  LS_ASSIGN_OR_RETURN(std::vector<std::string> all, checkpoint_coordinator_->AllGather(decision, deadline));
  decision = all[0];
  if (decision.empty()) {
    if (rank_ == 0) {
      LS_LOG(INFO) << "no checkpoint under " << ckpt::CheckpointsDir(options_.run_dir) << ": starting fresh";
    }
    return Status::Ok();
  }
  if (decision[0] == 'E') return CheckpointError(decision.substr(1));
  const std::string dir = decision.substr(1);

  Status loaded = LoadCheckpoint(dir);
  std::string mine = loaded.ok() ? "" : "rank " + std::to_string(rank_) + ": " + loaded.message();
  LS_ASSIGN_OR_RETURN(std::vector<std::string> outcomes, checkpoint_coordinator_->AllGather(mine, deadline));
  std::string failures;
  for (const std::string& o : outcomes) {
    if (!o.empty()) failures += (failures.empty() ? "" : "; ") + o;
  }
  if (!failures.empty()) {
    // The ranks agree that the job cannot resume; report the first rank's cause.
    return CheckpointError("cannot resume from " + dir + ": " + failures);
  }
  resumed_from_ = dir;
  last_saved_step_ = global_step_;  // the state on disk is this state
  return Status::Ok();
}

Status Trainer::ReadToBackend(const ckpt::CheckpointReader& reader, const std::string& buffer, int64_t begin,
                              int64_t end, void* out) {
  if (backend_->device().kind == DeviceKind::kCpu) return reader.Read(buffer, begin, end, out);
  std::vector<float> host(static_cast<size_t>(end - begin));
  LS_RETURN_IF_ERROR(reader.Read(buffer, begin, end, host.data()));
  backend_->CopyFromHost(out, host.data(), host.size() * sizeof(float));
  return Status::Ok();
}

Status Trainer::LoadCheckpoint(const std::string& dir) {
  LS_ASSIGN_OR_RETURN(std::unique_ptr<ckpt::CheckpointReader> reader,
                      ckpt::CheckpointReader::Open(dir, checkpoint_fs_.get()));
  const ckpt::CheckpointMeta& saved = reader->meta();
  std::vector<std::string> warnings;
  Status compatible = ckpt::CheckCompatible(saved, CheckpointMetaNow(), &warnings);
  if (!compatible.ok()) {
    return CheckpointError(dir + " does not fit this model: " + compatible.message());
  }
  if (rank_ == 0) {
    for (const std::string& w : warnings) LS_LOG(WARNING) << "resuming with a changed setting: " << w;
  }
  for (ModelPart& part : parts_) {
    Model& model = *part.model;
    Optimizer& optimizer = *part.optimizer;
    LS_RETURN_IF_ERROR(ReadToBackend(*reader, part.Key("params"), 0, model.param_count(), model.params().raw()));
    for (OptimizerStateBuffer& b : optimizer.state()) {
      const std::string name = part.Key(b.name);
      if (reader->FindBuffer(name) == nullptr) {
        return CheckpointError(dir + " holds no optimiser state '" + name + "' (saved with optimizer " +
                               saved.optimizer_kind + ", the recipe uses " + OptimizerName(optimizer.config().kind) +
                               ")");
      }
      LS_RETURN_IF_ERROR(ReadToBackend(*reader, name, optimizer.begin(), optimizer.end(), b.tensor.raw()));
    }
    auto steps = saved.schedule_state.find(part.Key("optimizer_steps"));
    optimizer.set_steps_taken(steps == saved.schedule_state.end() ? saved.step
                                                                 : static_cast<int64_t>(steps->second));
  }
  global_step_ = saved.step;
  if (rank_ == 0) {  // even with --quiet: which state a run continues is never noise
    LS_LOG(INFO) << "resumed from " << dir << " at step " << saved.step << " (epoch " << saved.epoch + 1
                 << ", saved by " << saved.world_size << " rank(s), now " << world_size_ << ")";
  }
  return Status::Ok();
}

ckpt::CheckpointMeta Trainer::CheckpointMetaNow() const {
  const config::Recipe& r = recipe_.recipe;
  const int64_t per_epoch = data_->StepsPerEpoch();
  ckpt::CheckpointMeta m;
  m.step = global_step_;
  m.epoch = global_step_ / per_epoch;
  m.sample_position = (global_step_ % per_epoch) * r.training().global_batch_size();
  m.world_size = world_size_;
  m.recipe_text = recipe_.text;
  m.recipe_hash = Fnv1a64(recipe_.text);
  m.architecture = ArchitectureFingerprint();
  m.architecture_fingerprint = Fnv1a64(m.architecture);
  m.hyperparameters = {{"global_batch_size", static_cast<double>(r.training().global_batch_size())}};
  m.schedule_state = {{"global_step", static_cast<double>(global_step_)}};
  // Each model's buffers, hyperparameters and schedule, named "generator.params" etc.
  // for a GAN and plainly ("params") for the recipe's one model.
  for (const ModelPart& part : parts_) {
    std::vector<ckpt::TensorInfo> tensors;
    for (const ParamInfo& p : part.model->param_infos()) {
      tensors.push_back({part.Key(p.name), std::vector<int64_t>(p.shape.begin(), p.shape.end()), p.offset});
    }
    const int64_t n = part.model->param_count();
    m.buffers.push_back({part.Key("params"), n, "f32", tensors});
    for (const OptimizerStateBuffer& b : part.optimizer->state()) {
      m.buffers.push_back({part.Key(b.name), n, "f32", tensors});
    }
    const OptimizerConfig& o = part.optimizer->config();
    m.optimizer_kind += (m.optimizer_kind.empty() ? "" : ",") + part.Key(OptimizerName(o.kind));
    const ScheduleConfig& s = part.schedule;
    const std::map<std::string, double> hyper = {
        {"learning_rate", s.base_lr}, {"momentum", o.momentum}, {"nesterov", o.nesterov ? 1.0 : 0.0},
        {"beta1", o.beta1},           {"beta2", o.beta2},       {"epsilon", o.epsilon},
        {"weight_decay", o.weight_decay}, {"clip_global_norm", part.clip_global_norm},
        {"warmup_steps", static_cast<double>(s.warmup_steps)}, {"total_steps", static_cast<double>(s.total_steps)}};
    for (const auto& [name, value] : hyper) m.hyperparameters[part.Key(name)] = value;
    m.schedule_state[part.Key("optimizer_steps")] = static_cast<double>(part.optimizer->steps_taken());
    m.schedule_state[part.Key("learning_rate")] = LearningRateAt(s, global_step_);
  }
  m.extras = data_->CheckpointExtras();  // e.g. the vocabulary of a language model
  m.extras["schedule_kind"] = ScheduleName(parts_.front().schedule.kind);
  // Initialisation and dropout use the counter-based Philox generator keyed by
  // (seed, layer, step, sample position): its whole state is the seed and the step.
  m.rng_states = {"philox4x32-10 seed=" + std::to_string(r.training().seed()) +
                  " step=" + std::to_string(global_step_) + " rank=" + std::to_string(rank_)};
  m.wall_time = static_cast<double>(std::time(nullptr));
  return m;
}

std::vector<ckpt::ShardSlice> Trainer::CheckpointSlices() const {
  // Every rank writes its 1/world range of each buffer -- the range it owns under
  // ZeRO-1, where its optimiser state covers exactly that range.
  // On a GPU the ranges are copied to host buffers first (the service snapshots host memory).
  const bool on_host = backend_->device().kind == DeviceKind::kCpu;
  size_t staged = 0;
  auto host_view = [&](const float* range, int64_t n) -> const float* {
    if (on_host) return range;
    if (checkpoint_host_.size() <= staged) checkpoint_host_.emplace_back(backend_.get());
    const size_t bytes = static_cast<size_t>(n) * sizeof(float);
    void* host = checkpoint_host_[staged++].Reserve(bytes);
    backend_->CopyToHost(host, range, bytes);
    return static_cast<const float*>(host);
  };
  std::vector<ckpt::ShardSlice> slices;
  for (const ModelPart& part : parts_) {
    const auto [begin, end] = part.RankRange(rank_);
    slices.push_back({part.Key("params"), begin, end, host_view(part.model->params().data<float>() + begin, end - begin)});
    for (const OptimizerStateBuffer& b : part.optimizer->state()) {
      const float* base = b.tensor.data<float>() - part.optimizer->begin();  // element 0 of the arena
      slices.push_back({part.Key(b.name), begin, end, host_view(base + begin, end - begin)});
    }
  }
  return slices;
}

Status Trainer::SaveCheckpoint(const std::string& reason) {
  if (!checkpoint_service_) return Status::Ok();
  Status submitted = checkpoint_service_->Submit(CheckpointMetaNow(), CheckpointSlices());
  last_saved_step_ = global_step_;
  last_checkpoint_time_ = NowSeconds();
  if (rank_ == 0 && options_.show_progress && submitted.ok()) {
    LS_LOG(INFO) << "checkpoint at step " << global_step_ << " (" << reason << ")"
                 << (checkpoint_service_->async() ? ", persisting in the background" : "");
  }
  if (!submitted.ok()) {  // this save failed (synchronous mode): report it, code and all
    checkpoint_failures_seen_ = checkpoint_service_->stats().failures;
    return ApplyFailurePolicy(submitted);
  }
  // Submit waited for the previous asynchronous save, so every rank learns of its
  // failure here, at the same step (never from the service thread's own timing).
  return ApplyFailurePolicy(UnreportedSaveFailure(Status::Ok()));
}

Status Trainer::FinishCheckpoints() {
  if (!checkpoint_service_) return Status::Ok();
  return ApplyFailurePolicy(UnreportedSaveFailure(checkpoint_service_->WaitIdle()));
}

Status Trainer::UnreportedSaveFailure(const Status& known) {
  const ckpt::ServiceStats stats = checkpoint_service_->stats();
  if (stats.failures <= checkpoint_failures_seen_) return Status::Ok();
  checkpoint_failures_seen_ = stats.failures;
  // `known` keeps the failure's code (a missed deadline must end the job); only the
  // message survives of a failure the service recorded in the background.
  return known.ok() ? CheckpointError(stats.last_error) : known;
}

Status Trainer::ApplyFailurePolicy(const Status& save) {
  if (save.ok()) return save;
  // A peer that never arrived leaves the others blocked: end the job everywhere.
  if (save.code() == StatusCode::kDeadlineExceeded) AbortJob(save);
  if (recipe_.recipe.checkpoint().on_failure() == config::Checkpoint::STOP) {
    return CheckpointError("checkpoint save failed (checkpoint.on_failure: STOP): " + save.message());
  }
  if (rank_ == 0) {
    LS_LOG(WARNING) << "checkpoint save failed; training continues (checkpoint.on_failure: CONTINUE) and the "
                       "previous checkpoint stays the newest: "
                    << save.message();
  }
  return Status::Ok();
}

Status Trainer::Preempt() {
  const std::string where = "preempted by a signal after step " + std::to_string(global_step_);
  if (!checkpoint_service_) {
    // Nothing saved: a requeue would start over, so this is a plain failure.
    return AbortedError(where + "; no --run-dir, so no checkpoint was written");
  }
  if (last_saved_step_ != global_step_) {
    Status saved = checkpoint_service_->Submit(CheckpointMetaNow(), CheckpointSlices());
    last_saved_step_ = global_step_;
    if (!saved.ok()) return CheckpointError(where + "; the checkpoint failed: " + saved.message());
  }
  Status persisted = checkpoint_service_->WaitIdle();
  if (persisted.code() == StatusCode::kDeadlineExceeded) AbortJob(persisted);
  if (!persisted.ok()) return CheckpointError(where + "; the checkpoint failed: " + persisted.message());
  return PreemptedError(where + "; state saved in " + checkpoint_service_->stats().last_committed_dir +
                        ": run again (--resume auto) to continue");
}

Status Trainer::MaybeCheckpoint() {
  if (!checkpoint_service_) return Status::Ok();
  const int64_t every = recipe_.recipe.checkpoint().every_steps();
  bool due = checkpoint_agreed_ || (every > 0 && global_step_ % every == 0);
  const char* reason = checkpoint_agreed_ ? "requested" : "every_steps";
  checkpoint_agreed_ = false;
  if (!due || last_saved_step_ == global_step_) return Status::Ok();
  return SaveCheckpoint(reason);
}

}  // namespace lockstep
