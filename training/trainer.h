// The training loop: recipe -> data, model, optimiser, sampler -> epochs of
// steps with per-epoch evaluation, progress output and metrics.jsonl.
// Composes runtime (and, later, checkpoints); driven by `lockstep train`.
// Not thread-safe: one Trainer per process, driven from the main thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "common/status.h"
#include "runtime/comm/communicator.h"
#include "runtime/comm/world.h"
#include "runtime/core/backend.h"
#include "runtime/core/ddp.h"
#include "runtime/core/model.h"
#include "runtime/core/optimizer.h"
#include "runtime/core/recipe.h"
#include "runtime/data/sampler.h"
#include "training/metrics.h"
#include "training/training_data.h"

namespace lockstep {

struct TrainOptions {
  std::string recipe_path;               // or recipe_text
  std::string recipe_text;               // used when recipe_path is empty (tests)
  std::vector<std::string> overrides;    // "training.epochs=3"
  std::string run_dir;                   // empty: no files written
  bool show_progress = true;             // rank 0 only
  std::string dataset_dir_override;      // tests: another dataset directory
  // "auto": the newest checkpoint under RUN_DIR/checkpoints that verifies (fresh
  // start when there is none); "none": always start fresh; else a checkpoint dir.
  std::string resume = "auto";
  // Stop (saving a checkpoint when checkpoints are on) once this many optimiser
  // steps are done, without changing the schedule the recipe implies; 0 = off.
  int64_t stop_at_step = 0;
};

struct EvalResult {
  double loss = 0;      // mean per sample
  double accuracy = 0;
  int64_t samples = 0;
};

class Trainer {
 public:
  static Result<std::unique_ptr<Trainer>> Create(const TrainOptions& options);
  ~Trainer();

  // Trains for the recipe's epochs (or until max_steps). Returns the last epoch's metrics.
  Result<EpochMetrics> Run();
  // Runs exactly `steps` optimiser steps from the current position (tests, benchmarks).
  Status TrainSteps(int64_t steps);
  // Evaluates on split `split` of data().EvalSplits() (0: validation, 1: test when
  // present), sharded over ranks and reduced: every rank gets exactly the single-rank
  // result. Losses are per prediction (per image, or nats per character).
  Result<EvalResult> Evaluate(int split);

  // The recipe's model, or a GAN's generator (model 0) and discriminator (model 1).
  int num_models() const { return static_cast<int>(parts_.size()); }
  Model& model(int i = 0) { return *parts_.at(static_cast<size_t>(i)).model; }
  Optimizer& optimizer(int i = 0) { return *parts_.at(static_cast<size_t>(i)).optimizer; }
  // "" for the recipe's model; "generator" or "discriminator" (checkpoint buffer prefixes).
  const std::string& model_name(int i = 0) const { return parts_.at(static_cast<size_t>(i)).name; }
  bool is_gan() const { return gan_ != nullptr; }
  const LoadedRecipe& recipe() const { return recipe_; }
  const TrainingData& data() const { return *data_; }
  int64_t global_step() const { return global_step_; }
  int64_t steps_per_epoch() const { return data_->StepsPerEpoch(); }
  double last_step_loss() const { return last_step_loss_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  comm::Communicator& communicator() { return *comm_; }
  const ReducerStats& reducer_stats() const { return parts_.front().reducer->stats(); }
  void ResetReducerStats() {
    for (ModelPart& p : parts_) p.reducer->ResetStats();
  }
  // Benchmarks: keep when each step's gradient wait began and ended (ReducerStats).
  void RecordReducerFinishWindows() {
    for (ModelPart& p : parts_) p.reducer->set_record_finish_windows(true);
  }
  // Benchmarks: start bucket all-reduces during backward (true) or after it.
  void SetReducerOverlap(bool overlap) {
    for (ModelPart& p : parts_) p.reducer->set_overlap(overlap);
  }
  // Ends the whole job after a failure that leaves peers blocked (a missed deadline):
  // prints the diagnostic, waits a short grace period so the other ranks can print
  // theirs, then aborts the communicator with the documented exit code.
  [[noreturn]] void AbortJob(const Status& status);
  // Bytes of optimiser state this rank holds, all models (ZeRO-1 divides it by the world size).
  int64_t optimizer_state_bytes();

  // --- checkpoints (training/checkpointing.cc) ---
  // Saves the state after the current step (collective: every rank calls it at the
  // same step). Asynchronous per the recipe: returns once the snapshot is staged.
  Status SaveCheckpoint(const std::string& reason);
  // Async-signal-safe: asks for a checkpoint at the next step boundary; the ranks
  // agree on it through the step's metrics all-reduce.
  void RequestCheckpoint() { checkpoint_requested_.store(true); }
  // Waits for the save in flight and applies the failure policy to its outcome.
  Status FinishCheckpoints();
  bool checkpoints_enabled() const { return checkpoint_service_ != nullptr; }
  const std::string& resumed_from() const { return resumed_from_; }
  const ckpt::CheckpointService* checkpoint_service() const { return checkpoint_service_.get(); }

 private:
  // One trained model with its optimiser, gradient reducer and learning-rate schedule.
  struct ModelPart {
    std::string name;  // "" (the recipe's model), "generator", "discriminator"
    std::unique_ptr<Model> model;
    std::unique_ptr<Optimizer> optimizer;
    std::unique_ptr<GradientReducer> reducer;
    std::vector<int64_t> partition;  // ZeRO-1: elements of the arena each rank owns
    ScheduleConfig schedule;
    float clip_global_norm = 0;
    // A checkpoint buffer or hyperparameter name: "params" or "generator.params".
    std::string Key(const std::string& base) const { return name.empty() ? base : name + "." + base; }
    // [begin, end) of the arena `rank` owns in `partition` (its ZeRO-1 range and checkpoint shard).
    std::pair<int64_t, int64_t> RankRange(int rank) const {
      std::vector<int64_t> offsets = comm::BlockOffsets(partition);
      return {offsets[static_cast<size_t>(rank)], offsets[static_cast<size_t>(rank) + 1]};
    }
  };

  Trainer() = default;
  // Optimiser (over this rank's ZeRO-1 range), reducer and schedule for `model`.
  Status AddModelPart(const std::string& name, std::unique_ptr<Model> model, const config::Optimizer& optimizer);
  // The GAN's models, noise and sample buffers (training/gan_step.cc).
  Status SetUpGan(const Shape& image_shape);
  // Everything that can fail differently on different ranks (recipe, dataset, model).
  Status SetUp();
  // Every rank learns whether every rank set up, and whether all built the same model
  // from the same recipe; a mismatch fails on every rank naming the ranks that differ.
  Status AgreeAcrossRanks(const Status& local_setup);
  // distributed.device_collectives: NCCL on GPU ranks: replaces the host-staged device
  // communicator. Collective; called after the start-up agreement.
  Status SetUpNccl();
  // One optimiser step on the global batch (epoch, step_in_epoch). Returns the GLOBAL
  // loss sum and correct count (reduced over ranks); *samples = global batch size.
  Result<LossValue> Step(int64_t epoch, int64_t step_in_epoch, int64_t* samples);
  // A GAN step: the discriminator's update, then the generator's. Returns the
  // discriminator's loss sum (real + generated per image) and its correct decisions
  // over both halves; the generator's loss sum goes to gan_->epoch_generator_loss.
  Result<LossValue> GanStep(int64_t epoch, int64_t step_in_epoch, int64_t* samples);
  // Slots 2 and 3 of a step's metrics: this rank wants a checkpoint / was signalled.
  void RaiseStepFlags(double* metrics);
  // All-reduces the step metrics (slots 2 and 3 as above) and records the agreements.
  Status AgreeOnStep(double* metrics, int count);
  // Backward through `part`; with launch_buckets (and no ZeRO-1) its reducer starts
  // each gradient bucket as backward completes it.
  void BackwardPart(ModelPart& part, const StepContext& ctx, const Tensor& doutput, bool launch_buckets,
                    Tensor* dinput = nullptr);
  // Reduces `part`'s gradients (its reducer holds what backward launched) and updates
  // it; a missed collective deadline ends the job (AbortJob).
  Status SynchronizeAndUpdate(ModelPart& part);
  Status ReduceAndUpdate(ModelPart& part);
  // End of a GAN epoch: the generator's loss, the sample grid and the quality proxy
  // into `m`; returns the epoch line's text (training/gan_step.cc).
  Result<std::string> GanEpochReport(EpochMetrics* m, int64_t samples);
  // Every model's architecture and parameter shapes (named for a GAN).
  std::string ArchitectureFingerprint() const;
  // Softmax cross-entropy per image, or per position for a language model.
  LossValue ComputeModelLoss(const Tensor& out, const Tensor& targets, float grad_scale, Tensor* dout);
  float LearningRate(const ModelPart& part) const;
  // Checkpoint service on its own communicator; stale .tmp directories removed.
  Status SetUpCheckpoints();
  // --resume: picks the checkpoint (rank 0) and loads it on every rank.
  Status Resume();
  Status LoadCheckpoint(const std::string& dir);
  // reader.Read into backend memory (through a host buffer when it is a GPU's).
  Status ReadToBackend(const ckpt::CheckpointReader& reader, const std::string& buffer, int64_t begin,
                       int64_t end, void* out);
  ckpt::CheckpointMeta CheckpointMetaNow() const;
  std::vector<ckpt::ShardSlice> CheckpointSlices() const;
  // Applies the recipe's triggers after a step.
  Status MaybeCheckpoint();
  // After an agreed preemption signal: save, wait for the save, return kPreempted.
  Status Preempt();
  // A save failure not yet reported to the loop (OK when none): `known` when it holds
  // the failure, else the service's recorded error. Marks it reported.
  Status UnreportedSaveFailure(const Status& known);
  std::chrono::milliseconds CheckpointDeadline() const;
  // A failed save: logged and tolerated, or an error, per checkpoint.on_failure.
  Status ApplyFailurePolicy(const Status& save);

  TrainOptions options_;
  LoadedRecipe recipe_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<TrainingData> data_;
  std::vector<ModelPart> parts_;
  struct GanState;
  std::unique_ptr<GanState> gan_;  // set for a GAN recipe
  LossKind loss_kind_ = LossKind::kSoftmaxCrossEntropy;
  comm::WorldInfo world_;
  std::unique_ptr<comm::Communicator> comm_;
  // For collectives on backend memory (parameters, gradients): a host-staging
  // wrapper of comm_ when the backend is a GPU, else null (comm_ itself serves).
  std::unique_ptr<comm::Communicator> device_comm_;
  comm::Communicator& DeviceComm() { return device_comm_ ? *device_comm_ : *comm_; }
  // Pinned host copies of device-resident checkpoint ranges (the service snapshots
  // from them); reused from save to save.
  mutable std::vector<HostBuffer> checkpoint_host_;
  int zero_stage_ = 0;
  std::chrono::milliseconds deadline_{300'000};
  int rank_ = 0;
  int world_size_ = 1;
  int accumulation_ = 1;
  int64_t micro_batch_ = 0;
  int64_t global_step_ = 0;
  int64_t total_steps_ = 0;
  double last_step_loss_ = 0;
  Tensor input_, labels_, doutput_;
  // The micro-batch (and Evaluate's batches) as gathered on the host (AllocateHost
  // memory: page-locked on a GPU), uploaded without waiting (CopyFromHostAsync). Each
  // upload is followed by a loss read-back, which waits for it, so the next gather never
  // overwrites a pending copy.
  std::optional<HostBuffer> host_images_, host_labels_;

  std::unique_ptr<ckpt::FileSystem> checkpoint_fs_;
  std::unique_ptr<ckpt::Coordinator> checkpoint_coordinator_;
  std::unique_ptr<ckpt::CheckpointService> checkpoint_service_;
  std::atomic<bool> checkpoint_requested_{false};
  bool checkpoint_agreed_ = false;   // some rank asked for a checkpoint at this step
  bool preemption_agreed_ = false;   // some rank received SIGUSR1/SIGTERM
  double last_checkpoint_time_ = 0;  // NowSeconds() of the last save (or of the start)
  int64_t last_saved_step_ = -1;
  int64_t checkpoint_failures_seen_ = 0;  // failed saves already reported
  std::string resumed_from_;
};

}  // namespace lockstep
