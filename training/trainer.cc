#include "training/trainer.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <tuple>

#include "common/exit_codes.h"
#include "common/fnv.h"
#include "common/log.h"
#include "common/process_identity.h"
#include "runtime/comm/fault_injecting_communicator.h"
#include "runtime/comm/local_communicator.h"
#include "runtime/comm/mpi_communicator.h"
#include "common/sysinfo.h"
#include "kernels/cpu/gemm.h"
#include "runtime/core/cuda_backend.h"
#include "runtime/core/host_staged_communicator.h"
#include "runtime/core/sequence_loss.h"
#include "training/nccl_collectives.h"
#include "training/gan_state.h"
#include "training/preemption.h"
#include "training/heartbeat.h"
#include "training/progress.h"

namespace lockstep {
namespace {

// The recipe's training.device: the CPU backend, or the CUDA backend on this rank's
// GPU (local rank modulo the visible devices).
Result<std::unique_ptr<Backend>> CreateBackendFor(const config::Recipe& r, const comm::WorldInfo& world) {
  const GemmPrecision precision = ToGemmPrecision(r);
  if (r.training().device() == config::CPU) return CreateCpuBackend(precision);
  CudaBackendOptions options;
  options.gemm_precision = precision;
  options.local_rank = world.local_rank;
  options.deterministic = r.training().deterministic();
  Result<std::unique_ptr<Backend>> cuda = CreateCudaBackend(options);
  if (!cuda.ok()) return cuda.status().WithContext("training.device: CUDA");
  return cuda;
}

Status MakeDirs(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!partial.empty() && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return IoError("cannot create directory " + partial + ": " + std::strerror(errno));
      }
    }
    if (i < path.size()) partial += path[i];
  }
  return Status::Ok();
}

// One formatting of fixed-point numbers for every progress and summary line.
constexpr auto* Fixed = &ProgressReporter::FormatFixed;

}  // namespace

Trainer::~Trainer() = default;

Result<std::unique_ptr<Trainer>> Trainer::Create(const TrainOptions& options) {
  std::unique_ptr<Trainer> t(new Trainer());
  t->options_ = options;
  LS_ASSIGN_OR_RETURN(t->world_, comm::DiscoverWorld());
  t->rank_ = t->world_.rank;
  t->world_size_ = t->world_.world_size;
  if (t->world_size_ > 1) {
    auto mpi = comm::MpiCommunicator::Create("world");
    if (!mpi.ok()) return mpi.status().WithContext("cannot start MPI (" + t->world_.source + " launch)");
    t->comm_ = std::move(mpi).value();
  } else {
    t->comm_ = std::make_unique<comm::LocalCommunicator>("world");
  }
  LS_ASSIGN_OR_RETURN(t->comm_, comm::MaybeWrapWithFaults(std::move(t->comm_)));
  SetProcessRank(t->rank_, t->world_size_);
  Status setup = t->SetUp();
  Status agreed = t->AgreeAcrossRanks(setup);
  if (agreed.code() == StatusCode::kDeadlineExceeded) t->AbortJob(agreed);
  if (!agreed.ok() && t->world_size_ > 1) {
    // Every rank knows the job cannot start. Each reports, then all pass a barrier,
    // so no rank's exit lets mpirun kill a peer before it has said why.
    LS_LOG(ERROR) << agreed.message();
    Status barrier = t->comm_->BarrierSync({"start-up failure"});
    if (!barrier.ok()) t->AbortJob(barrier);
  }
  LS_RETURN_IF_ERROR(agreed);
  LS_RETURN_IF_ERROR(t->SetUpNccl());
  // Every rank starts from rank 0's parameters, whatever its own initialisation did.
  for (ModelPart& part : t->parts_) {
    Status sent = t->DeviceComm().BroadcastSync(part.model->params().raw(), part.model->param_count(),
                                          comm::DataType::kFloat32, 0, {"initial parameters"});
    if (sent.code() == StatusCode::kDeadlineExceeded) t->AbortJob(sent);
    LS_RETURN_IF_ERROR(sent);
  }
  // Checkpoints come after the start-up agreement, so every rank gets here or none.
  Status resumed = t->SetUpCheckpoints();
  if (resumed.ok()) resumed = t->Resume();
  if (resumed.code() == StatusCode::kDeadlineExceeded) t->AbortJob(resumed);
  LS_RETURN_IF_ERROR(resumed);
  if (!options.run_dir.empty() && t->rank_ == 0) {
    std::ofstream(options.run_dir + "/recipe.pbtxt") << t->recipe_.text;
  }
  return t;
}

Status Trainer::SetUp() {
  if (!options_.recipe_path.empty()) {
    LS_ASSIGN_OR_RETURN(recipe_, LoadRecipe(options_.recipe_path, options_.overrides));
  } else {
    LS_ASSIGN_OR_RETURN(recipe_, ParseRecipe(options_.recipe_text, "<recipe>", options_.overrides));
  }
  const config::Recipe& r = recipe_.recipe;
  deadline_ = std::chrono::milliseconds(
      static_cast<int64_t>(r.distributed().collective_timeout_seconds() * 1000.0));
  comm_->set_default_deadline(deadline_);

  // Compute threads: the node's cores shared among the ranks on it, so the BLAS
  // threads of several ranks never oversubscribe the node.
  int threads = r.training().threads();
  if (threads == 0) threads = std::max(1, OnlineCores() / std::max(1, world_.local_size));
  kernels::cpu::SetBlasThreads(threads);

  LS_ASSIGN_OR_RETURN(backend_, CreateBackendFor(r, world_));
  if (backend_->device().kind != DeviceKind::kCpu) {
    // MPI moves host memory: stage device buffers through host copies.
    device_comm_ = std::make_unique<HostStagedCommunicator>(comm_.get(), backend_.get());
  }
  LS_ASSIGN_OR_RETURN(data_, LoadTrainingData(recipe_, options_.dataset_dir_override));

  Shape input_shape(r.model().input_shape().begin(), r.model().input_shape().end());
  Shape data_shape = data_->sample_shape();
  if (input_shape.empty()) input_shape = data_shape;
  if (NumElements(input_shape) != NumElements(data_shape)) {
    return InvalidArgumentError(recipe_.path + ": model.input_shape " + ShapeToString(input_shape) +
                                " does not hold a dataset sample of shape " + ShapeToString(data_shape));
  }
  accumulation_ = std::max(1, r.distributed().gradient_accumulation_steps());
  LS_ASSIGN_OR_RETURN(data::MicroBatchPlan plan,
                      data::DistributedSampler::Plan(r.training().global_batch_size(), world_size_, accumulation_));
  micro_batch_ = plan.micro_batch;
  int64_t epoch_steps = data_->StepsPerEpoch() * std::max<int64_t>(r.training().epochs(), 0);
  total_steps_ = r.training().max_steps() > 0
                     ? (epoch_steps > 0 ? std::min(epoch_steps, r.training().max_steps()) : r.training().max_steps())
                     : epoch_steps;
  zero_stage_ = r.distributed().zero_stage();
  if (r.has_gan()) {
    LS_RETURN_IF_ERROR(SetUpGan(input_shape));
    if (!options_.run_dir.empty() && rank_ == 0) LS_RETURN_IF_ERROR(MakeDirs(options_.run_dir));
    return Status::Ok();
  }
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                      BuildModel(recipe_, backend_.get(), input_shape, data_->vocab_size()));
  model->InitializeParameters(r.training().seed());
  loss_kind_ = ToLossKind(r.loss());
  const int64_t targets = data_->targets_per_sample();
  if (targets > 1 && (model->output_shape().size() != 2 || model->output_shape()[0] != targets)) {
    return InvalidArgumentError(recipe_.path + ": a language model must output (" + std::to_string(targets) +
                                ", vocabulary) per sample (one prediction per position), the model outputs " +
                                ShapeToString(model->output_shape()));
  }
  LS_RETURN_IF_ERROR(AddModelPart("", std::move(model), r.optimizer()));
  const Model& m = *parts_.front().model;

  int64_t sample_elems = NumElements(input_shape);
  Shape in = input_shape;
  in.insert(in.begin(), micro_batch_);
  input_ = Tensor::Empty(*backend_, in, DType::kFloat32);
  labels_ = Tensor::Empty(*backend_, {micro_batch_ * targets}, DType::kInt32);
  Shape out = m.output_shape();
  out.insert(out.begin(), micro_batch_);
  doutput_ = Tensor::Empty(*backend_, out, DType::kFloat32);
  host_images_.emplace(backend_.get());
  host_images_->Reserve(sizeof(float) * static_cast<size_t>(micro_batch_ * sample_elems));
  host_labels_.emplace(backend_.get());
  host_labels_->Reserve(sizeof(int32_t) * static_cast<size_t>(micro_batch_ * targets));

  if (!options_.run_dir.empty() && rank_ == 0) LS_RETURN_IF_ERROR(MakeDirs(options_.run_dir));
  return Status::Ok();
}

Status Trainer::SetUpNccl() {
  if (backend_->device().kind == DeviceKind::kCpu ||
      recipe_.recipe.distributed().device_collectives() != config::NCCL) {
    return Status::Ok();
  }
  // Collective (NCCL's init), so after the start-up agreement: every rank gets here.
  Result<std::unique_ptr<comm::Communicator>> nccl = CreateNcclDeviceCommunicator(comm_.get(), *backend_);
  LS_RETURN_IF_ERROR(AgreeAcrossRanks(nccl.ok() ? Status::Ok() : nccl.status()));
  device_comm_ = std::move(nccl).value();
  device_comm_->set_default_deadline(deadline_);
  for (ModelPart& part : parts_) part.reducer->set_communicator(device_comm_.get());
  if (rank_ == 0) {
    LS_LOG(INFO) << "gradients and parameters over NCCL";
  }
  return Status::Ok();
}

Status Trainer::AgreeAcrossRanks(const Status& local) {
  // [setup ok, recipe hash, architecture hash] from every rank.
  int64_t mine[3] = {local.ok() ? 1 : 0, 0, 0};
  if (local.ok()) {
    mine[1] = static_cast<int64_t>(Fnv1a64(recipe_.text));
    mine[2] = static_cast<int64_t>(Fnv1a64(ArchitectureFingerprint()));
  }
  std::vector<int64_t> all(static_cast<size_t>(3 * world_size_));
  LS_RETURN_IF_ERROR(comm_->AllGatherSync(mine, all.data(), 3, comm::DataType::kInt64, {"start-up consistency check"}));
  if (!local.ok()) return local;
  std::string failed, model_differs, recipe_differs;
  for (int r = 0; r < world_size_; ++r) {
    const int64_t* theirs = &all[static_cast<size_t>(3 * r)];
    if (theirs[0] == 0) {
      failed += (failed.empty() ? "" : ", ") + std::to_string(r);
    } else if (theirs[2] != mine[2]) {
      model_differs += (model_differs.empty() ? "" : ", ") + std::to_string(r);
    } else if (theirs[1] != mine[1]) {
      recipe_differs += (recipe_differs.empty() ? "" : ", ") + std::to_string(r);
    }
  }
  if (!failed.empty()) {
    return FailedPreconditionError("rank(s) " + failed + " failed to set up (their own log says why); rank " +
                                   std::to_string(rank_) + " stops too");
  }
  if (!model_differs.empty()) {
    return InvalidArgumentError("rank(s) " + model_differs + " built a different model than rank " +
                                std::to_string(rank_) + " (architecture or parameter shapes differ): every rank "
                                "must be given the same recipe");
  }
  if (!recipe_differs.empty()) {
    return InvalidArgumentError("rank(s) " + recipe_differs + " were given a different recipe than rank " +
                                std::to_string(rank_) + " (same architecture, other settings): every rank must be "
                                "given the same recipe and overrides");
  }
  return Status::Ok();
}

void Trainer::AbortJob(const Status& status) {
  std::fprintf(stderr, "[%s] lockstep: %s\n", ProcessDescription().c_str(), status.ToString().c_str());
  std::fflush(stderr);
  // Every rank blocked on the same collective reaches its deadline at about the same
  // time; give them a moment to report before MPI_Abort takes the job down.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  comm_->Abort(status.message(), ExitCodeFor(status));
  std::abort();  // Abort does not return
}

Status Trainer::AddModelPart(const std::string& name, std::unique_ptr<Model> model,
                             const config::Optimizer& optimizer) {
  const config::Recipe& r = recipe_.recipe;
  ModelPart part;
  part.name = name;
  part.schedule = ToScheduleConfig(r, optimizer, total_steps_);
  LS_RETURN_IF_ERROR(ValidateSchedule(part.schedule).WithContext(recipe_.path));
  part.clip_global_norm = optimizer.clip_global_norm();
  // ZeRO-1: this rank's optimiser covers only its partition of the arena.
  const int64_t n = model->param_count();
  part.partition = PartitionCounts(n, world_size_);
  int64_t begin = 0, end = n;
  if (zero_stage_ == 1) std::tie(begin, end) = part.RankRange(rank_);
  LS_ASSIGN_OR_RETURN(part.optimizer, Optimizer::Create(backend_.get(), ToOptimizerConfig(optimizer), begin, end));
  ReducerOptions ro;
  ro.bucket_elements = std::max<int64_t>(1, static_cast<int64_t>(r.distributed().bucket_size_mb() * (1 << 20) / 4));
  // On CPU ranks the all-reduce is CPU work on the same cores as backward, so
  // overlapping it measured slower here (ENVIRONMENT.md); default to serial.
  ro.overlap = r.distributed().has_overlap() ? r.distributed().overlap() : false;
  ro.deadline = deadline_;
  part.reducer = std::make_unique<GradientReducer>(&DeviceComm(), model->grads().data<float>(), n, ro);
  part.model = std::move(model);
  parts_.push_back(std::move(part));
  return Status::Ok();
}

int64_t Trainer::optimizer_state_bytes() {
  int64_t bytes = 0;
  for (ModelPart& p : parts_) {
    for (auto& b : p.optimizer->state()) bytes += static_cast<int64_t>(b.tensor.nbytes());
  }
  return bytes;
}

float Trainer::LearningRate(const ModelPart& part) const { return LearningRateAt(part.schedule, global_step_); }

void Trainer::RaiseStepFlags(double* metrics) {
  const double every_seconds = recipe_.recipe.checkpoint().every_seconds();
  if (checkpoint_requested_.exchange(false) ||
      (rank_ == 0 && every_seconds > 0 && NowSeconds() - last_checkpoint_time_ >= every_seconds)) {
    metrics[2] = 1;
  }
  // A preemption signal on any rank stops every rank after this step.
  if (PreemptionSignal() != 0) metrics[3] = 1;
}

Status Trainer::AgreeOnStep(double* metrics, int count) {
  Status synced = comm_->AllReduceSync(metrics, count, comm::DataType::kFloat64, comm::ReduceOp::kSum,
                                       {"step metrics", global_step_});
  checkpoint_agreed_ = metrics[2] > 0;
  preemption_agreed_ = metrics[3] > 0;
  if (synced.code() == StatusCode::kDeadlineExceeded) AbortJob(synced);
  return synced;
}

Result<LossValue> Trainer::Step(int64_t epoch, int64_t step_in_epoch, int64_t* samples) {
  std::vector<int64_t> global = data_->GlobalBatch(epoch, step_in_epoch);
  // Losses are means over predictions: one per image, one per position of a window.
  const int64_t targets = data_->targets_per_sample();
  *samples = static_cast<int64_t>(global.size()) * targets;
  const float grad_scale = 1.0f / static_cast<float>(*samples);
  const config::Recipe& r = recipe_.recipe;
  // Loss sum, correct count, and whether any rank wants a checkpoint after this step
  // (a request, or rank 0's clock for checkpoint.every_seconds): reduced together, so
  // every rank decides the same at the same step boundary.
  double local[4] = {0, 0, 0, 0};
  RaiseStepFlags(local);
  ModelPart& part = parts_.front();
  Model& model = *part.model;
  bool grads_written = false;
  for (int micro = 0; micro < accumulation_; ++micro) {
    data::RankSliceInfo slice = data::DistributedSampler::RankSlice(global, rank_, world_size_, accumulation_, micro);
    const std::vector<int64_t>& mine = slice.indices;
    int64_t n = static_cast<int64_t>(mine.size());
    bool last_micro = micro + 1 == accumulation_;
    if (last_micro && zero_stage_ == 0) part.reducer->BeginStep(global_step_);
    if (n == 0) continue;
    StepContext ctx;
    ctx.backend = backend_.get();
    ctx.training = true;
    ctx.grad_beta = grads_written ? 1.0f : 0.0f;
    ctx.seed = r.training().seed();
    ctx.step = static_cast<uint64_t>(global_step_);
    // Dropout masks are keyed by the sample's position in the global batch, so they
    // are the same whichever rank (and world size) processes the sample.
    ctx.first_global_row = slice.first_position;
    float* images = static_cast<float*>(host_images_->data());
    int32_t* labels = static_cast<int32_t*>(host_labels_->data());
    data_->GatherTrain(mine.data(), n, images, labels);
    Shape s = input_.shape();
    s[0] = n;
    Tensor x = input_.Subview(0, s);
    Tensor y = labels_.Subview(0, {n * targets});
    backend_->CopyFromHostAsync(x.raw(), images, x.nbytes());
    backend_->CopyFromHostAsync(y.raw(), labels, y.nbytes());
    Tensor out = model.Forward(ctx, x);
    Tensor dout = doutput_.Subview(0, out.shape());
    // Returns the loss to the host: waits for the uploads above (see host_images_).
    LossValue v = ComputeModelLoss(out, y, grad_scale, &dout);
    local[0] += v.sum;
    local[1] += static_cast<double>(v.correct);
    BackwardPart(part, ctx, dout, /*launch_buckets=*/last_micro);
    grads_written = true;
  }
  if (!grads_written) {
    // This rank had no samples (a final partial batch): contribute zeros.
    backend_->ZeroBytes(model.grads().raw(), model.grads().nbytes());
  }
  LS_RETURN_IF_ERROR(SynchronizeAndUpdate(part));
  // Global loss and accuracy for rank 0's log.
  LS_RETURN_IF_ERROR(AgreeOnStep(local, 4));
  ++global_step_;
  LossValue total;
  total.sum = local[0];
  total.correct = static_cast<int64_t>(local[1]);
  return total;
}

void Trainer::BackwardPart(ModelPart& part, const StepContext& ctx, const Tensor& doutput, bool launch_buckets,
                           Tensor* dinput) {
  if (launch_buckets && zero_stage_ == 0) {
    part.model->Backward(ctx, doutput, [&part](int64_t prefix) { part.reducer->OnGradsReady(prefix); }, dinput);
  } else {
    part.model->Backward(ctx, doutput, nullptr, dinput);
  }
}

Status Trainer::SynchronizeAndUpdate(ModelPart& part) {
  Status s = ReduceAndUpdate(part);
  if (s.code() == StatusCode::kDeadlineExceeded) AbortJob(s);
  return s;
}

Status Trainer::ReduceAndUpdate(ModelPart& part) {
  float* grads = part.model->grads().data<float>();
  float* params = part.model->params().data<float>();
  const int64_t n = part.model->param_count();
  const float clip = part.clip_global_norm;
  Optimizer& optimizer = *part.optimizer;
  if (zero_stage_ == 0) {
    LS_RETURN_IF_ERROR(part.reducer->Finish());
    if (clip > 0) {
      double norm = std::sqrt(backend_->SumOfSquares(grads, n));
      if (norm > clip) backend_->Scale(grads, n, static_cast<float>(clip / norm));
    }
    optimizer.Step(LearningRate(part), params, grads);
    return Status::Ok();
  }
  // ZeRO-1: each rank receives the reduced gradients of its own partition (in place),
  // updates that partition, then every rank gathers everyone's parameters.
  const int64_t begin = optimizer.begin(), end = optimizer.end();
  LS_RETURN_IF_ERROR(DeviceComm().ReduceScatterSync(grads, grads + begin, part.partition, comm::DataType::kFloat32,
                                              comm::ReduceOp::kSum, {"zero1 gradient reduce-scatter", global_step_}));
  if (clip > 0) {
    double sq = backend_->SumOfSquares(grads + begin, end - begin);
    LS_RETURN_IF_ERROR(comm_->AllReduceSync(&sq, 1, comm::DataType::kFloat64, comm::ReduceOp::kSum,
                                            {"gradient norm", global_step_}));
    double norm = std::sqrt(sq);
    if (norm > clip) backend_->Scale(grads + begin, end - begin, static_cast<float>(clip / norm));
  }
  optimizer.Step(LearningRate(part), params, grads);
  return DeviceComm().AllGatherVSync(params + begin, params, part.partition, comm::DataType::kFloat32,
                               {"zero1 parameter all-gather", global_step_});
}

Status Trainer::TrainSteps(int64_t steps) {
  int64_t per_epoch = data_->StepsPerEpoch();
  for (int64_t i = 0; i < steps; ++i) {
    int64_t samples = 0;
    const int64_t epoch = global_step_ / per_epoch, step = global_step_ % per_epoch;
    LS_ASSIGN_OR_RETURN(LossValue v, gan_ ? GanStep(epoch, step, &samples) : Step(epoch, step, &samples));
    last_step_loss_ = samples ? v.sum / static_cast<double>(samples) : 0;
    if (!std::isfinite(last_step_loss_)) {
      return FailedPreconditionError("loss became " + std::to_string(last_step_loss_) + " at step " +
                                     std::to_string(global_step_) + " (learning rate too high?)");
    }
  }
  return Status::Ok();
}

Result<EvalResult> Trainer::Evaluate(int split) {
  if (gan_) {
    return FailedPreconditionError("a GAN has no evaluation split: its epochs report the quality proxy instead");
  }
  Model& model = *parts_.front().model;
  const int64_t items = data_->EvalSplits().at(static_cast<size_t>(split)).items;
  data::IndexRange shard = data::DistributedSampler::EvalShard({0, items}, rank_, world_size_);
  const int64_t batch = recipe_.recipe.training().eval_batch_size();
  const int64_t targets = data_->targets_per_sample();
  Shape in = model.input_shape();
  // Gathered into the training step's host buffers (grown once if the evaluation batch
  // is larger) and uploaded without waiting, as in Step: each batch's loss read-back
  // waits for them.
  float* inputs = static_cast<float*>(host_images_->Reserve(sizeof(float) * static_cast<size_t>(batch * NumElements(in))));
  int32_t* labels = static_cast<int32_t*>(host_labels_->Reserve(sizeof(int32_t) * static_cast<size_t>(batch * targets)));
  in.insert(in.begin(), batch);
  Tensor x_all = Tensor::Empty(*backend_, in, DType::kFloat32);
  Tensor y_all = Tensor::Empty(*backend_, {batch * targets}, DType::kInt32);
  double sums[2] = {0, 0};  // loss sum, correct
  StepContext ctx;
  ctx.backend = backend_.get();
  ctx.training = false;
  for (int64_t b = shard.begin; b < shard.end; b += batch) {
    int64_t n = std::min(batch, shard.end - b);
    data_->GatherEval(split, b, n, inputs, labels);
    Shape s = x_all.shape();
    s[0] = n;
    Tensor x = x_all.Subview(0, s);
    Tensor y = y_all.Subview(0, {n * targets});
    backend_->CopyFromHostAsync(x.raw(), inputs, x.nbytes());
    backend_->CopyFromHostAsync(y.raw(), labels, y.nbytes());
    Tensor out = model.Forward(ctx, x);
    LossValue v = ComputeModelLoss(out, y, 0.0f, nullptr);
    sums[0] += v.sum;
    sums[1] += static_cast<double>(v.correct);
  }
  Status reduced = comm_->AllReduceSync(sums, 2, comm::DataType::kFloat64, comm::ReduceOp::kSum, {"evaluation"});
  if (reduced.code() == StatusCode::kDeadlineExceeded) AbortJob(reduced);
  LS_RETURN_IF_ERROR(reduced);
  EvalResult result;
  result.samples = items * targets;
  if (result.samples > 0) {
    result.loss = sums[0] / static_cast<double>(result.samples);
    result.accuracy = sums[1] / static_cast<double>(result.samples);
  }
  return result;
}

std::string Trainer::ArchitectureFingerprint() const {
  std::string all;
  for (const ModelPart& p : parts_) all += (p.name.empty() ? "" : "[" + p.name + "]\n") + p.model->Fingerprint();
  return all;
}

LossValue Trainer::ComputeModelLoss(const Tensor& out, const Tensor& targets, float grad_scale, Tensor* dout) {
  if (data_->targets_per_sample() > 1) return SequenceSoftmaxCrossEntropy(*backend_, out, targets, grad_scale, dout);
  return ComputeLoss(*backend_, loss_kind_, out, targets, grad_scale, dout);
}

Result<EpochMetrics> Trainer::Run() {
  InstallPreemptionHandlers();
  StartHeartbeat(rank_, world_size_);  // no-op unless started by `lockstep launch`
  const config::Recipe& r = recipe_.recipe;
  bool leader = rank_ == 0;
  ProgressReporter progress(leader && options_.show_progress, r.training().log_every_steps());
  if (leader && options_.show_progress) {
    const char* blas_timeout = std::getenv("OPENBLAS_THREAD_TIMEOUT");
    int64_t params = 0;
    for (const ModelPart& p : parts_) params += p.model->param_count();
    progress.Line("lockstep: recipe " + recipe_.path + ", " + std::to_string(params) +
                  " parameters, global batch " + std::to_string(r.training().global_batch_size()) +
                  ", world size " + std::to_string(world_size_) + ", " +
                  std::to_string(kernels::cpu::BlasThreads()) + " BLAS thread(s), OPENBLAS_THREAD_TIMEOUT=" +
                  (blas_timeout ? blas_timeout : "unset"));
    for (const ModelPart& p : parts_) progress.Line((p.name.empty() ? "" : p.name + ":\n") + p.model->Summary());
  }
  // A GAN's discriminator decides twice per image (the real one and a generated one).
  const double decisions_per_sample = gan_ ? 2.0 : 1.0;
  const double run_start = NowSeconds();
  const int64_t per_epoch = data_->StepsPerEpoch();
  const int64_t epochs = (total_steps_ + per_epoch - 1) / per_epoch;
  // --stop-at-step ends this process early without changing the schedule.
  const int64_t stop_step =
      options_.stop_at_step > 0 ? std::min(total_steps_, options_.stop_at_step) : total_steps_;
  EpochMetrics m;
  while (global_step_ < stop_step) {
    int64_t epoch = global_step_ / per_epoch;
    int64_t first = global_step_ % per_epoch;
    int64_t last = std::min(per_epoch, first + (stop_step - global_step_));
    progress.StartEpoch(epoch + 1, epochs, last);
    double epoch_start = NowSeconds();
    double loss_sum = 0;
    int64_t correct = 0, samples = 0;
    float lr = LearningRate(parts_.front());
    for (int64_t s = first; s < last; ++s) {
      int64_t n = 0;
      lr = LearningRate(parts_.front());
      LS_ASSIGN_OR_RETURN(LossValue v, gan_ ? GanStep(epoch, s, &n) : Step(epoch, s, &n));
      loss_sum += v.sum;
      correct += v.correct;
      samples += n;
      double mean = loss_sum / static_cast<double>(samples);
      if (!std::isfinite(mean)) {
        return FailedPreconditionError("training loss became non-finite at step " +
                                       std::to_string(global_step_) + " (learning rate too high?)");
      }
      double elapsed = NowSeconds() - epoch_start;
      progress.Update(s + 1, mean, static_cast<double>(correct) / (decisions_per_sample * static_cast<double>(samples)),
                      static_cast<double>(samples) / std::max(elapsed, 1e-9));
      ReportHeartbeat(global_step_, n ? v.sum / static_cast<double>(n) : 0.0,
                      static_cast<double>(samples) / std::max(elapsed, 1e-9));
      LS_RETURN_IF_ERROR(MaybeCheckpoint());
      if (preemption_agreed_) return Preempt();
    }
    double train_seconds = NowSeconds() - epoch_start;
    m = EpochMetrics{};
    m.epoch = epoch + 1;
    m.step = global_step_;
    m.train_loss = samples ? loss_sum / static_cast<double>(samples) : 0;
    m.train_accuracy =
        samples ? static_cast<double>(correct) / (decisions_per_sample * static_cast<double>(samples)) : 0;
    std::string evaluation;  // the epoch line's middle part
    if (gan_) {
      LS_ASSIGN_OR_RETURN(evaluation, GanEpochReport(&m, samples));
    } else {
      LS_ASSIGN_OR_RETURN(EvalResult val, Evaluate(0));
      EvalResult test;
      m.has_test = data_->EvalSplits().size() > 1;
      if (m.has_test) {
        LS_ASSIGN_OR_RETURN(test, Evaluate(1));
      }
      m.val_loss = val.loss;
      m.val_accuracy = val.accuracy;
      m.test_loss = test.loss;
      m.test_accuracy = test.accuracy;
      if (data_->targets_per_sample() > 1) m.val_bits_per_char = m.val_loss / std::log(2.0);
      evaluation = "loss " + Fixed(m.train_loss, 4) + " acc " + Fixed(m.train_accuracy, 4) + " | val loss " +
                   Fixed(m.val_loss, 4) + " acc " + Fixed(m.val_accuracy, 4) +
                   (m.has_test ? " | test loss " + Fixed(m.test_loss, 4) + " acc " + Fixed(m.test_accuracy, 4)
                               : " (" + Fixed(m.val_bits_per_char, 3) + " bits/char)");
    }
    const int64_t per_sample = data_->targets_per_sample();
    m.samples_per_sec = static_cast<double>(samples / per_sample) / std::max(train_seconds, 1e-9);
    if (per_sample > 1) m.tokens_per_sec = static_cast<double>(samples) / std::max(train_seconds, 1e-9);
    m.epoch_seconds = NowSeconds() - epoch_start;
    m.wall_seconds = NowSeconds() - run_start;
    m.peak_rss_mb = PeakRssMiB();
    m.learning_rate = lr;
    m.world_size = world_size_;
    progress.EndEpoch("epoch " + std::to_string(m.epoch) + "/" + std::to_string(epochs) + ": " + evaluation +
                      " | " + Fixed(m.samples_per_sec, 0) + " samples/s, " + Fixed(m.epoch_seconds, 1) +
                      " s, peak RSS " + Fixed(m.peak_rss_mb, 0) + " MiB");
    if (leader && !options_.run_dir.empty()) {
      LS_RETURN_IF_ERROR(AppendMetrics(options_.run_dir + "/metrics.jsonl", m));
    }
  }
  const bool stopped_early = global_step_ < total_steps_;
  if ((recipe_.recipe.checkpoint().at_end() || stopped_early) && last_saved_step_ != global_step_) {
    LS_RETURN_IF_ERROR(SaveCheckpoint(stopped_early ? "stopped at --stop-at-step" : "end of training"));
  }
  LS_RETURN_IF_ERROR(FinishCheckpoints());
  return m;
}

}  // namespace lockstep
