// The trainer's GAN: set-up, the two-phase step and the per-epoch report.
// Data parallelism is the same as for one model: every rank takes its slice of the
// global batch, each model's gradients are pre-scaled by 1/global_batch and summed
// by its own reducer. Noise and dropout masks are keyed by (seed, step, global
// sample position), so any world size computes the same step and a resumed run
// continues exactly.
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "kernels/cpu/dropout.h"
#include "runtime/core/loss.h"
#include "training/gan_state.h"
#include "training/image_grid.h"
#include "training/progress.h"

namespace lockstep {
namespace {

// Philox streams: which noise a draw is, so no two uses ever share random numbers.
enum NoiseStream : uint32_t { kDiscriminatorPhase = 1, kGeneratorPhase = 2, kGridSamples = 3, kQualitySamples = 4 };

Tensor BatchTensor(Backend& backend, int64_t batch, Shape per_sample) {
  per_sample.insert(per_sample.begin(), batch);
  return Tensor::Empty(backend, per_sample, DType::kFloat32);
}

void FillTensor(Backend& backend, Tensor* t, float value) {
  std::vector<float> host(static_cast<size_t>(t->numel()), value);
  backend.CopyFromHost(t->raw(), host.data(), t->nbytes());
}

// One formatting of fixed-point numbers for every progress and summary line.
constexpr auto* Fixed = &ProgressReporter::FormatFixed;

}  // namespace

void FillStandardNormal(uint64_t seed, uint32_t stream, uint64_t step, int64_t first_row, int64_t rows, int64_t dim,
                        float* out) {
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  for (int64_t r = 0; r < rows; ++r) {
    float* row = out + r * dim;
    for (int64_t e = 0; e < dim; e += 4) {
      const std::array<uint32_t, 4> counter = {static_cast<uint32_t>(e / 4), static_cast<uint32_t>(first_row + r),
                                               static_cast<uint32_t>(step),
                                               static_cast<uint32_t>(step >> 32) ^ (stream << 24)};
      const std::array<uint32_t, 4> bits = kernels::cpu::Philox4x32(counter, key);
      for (int pair = 0; pair < 2; ++pair) {
        // (0, 1]: the logarithm stays finite.
        const double u1 = (static_cast<double>(bits[2 * pair] >> 8) + 1.0) / 16777216.0;
        const double u2 = static_cast<double>(bits[2 * pair + 1] >> 8) / 16777216.0;
        const double radius = std::sqrt(-2.0 * std::log(u1));
        const double angle = 6.283185307179586 * u2;
        if (e + 2 * pair < dim) row[e + 2 * pair] = static_cast<float>(radius * std::cos(angle));
        if (e + 2 * pair + 1 < dim) row[e + 2 * pair + 1] = static_cast<float>(radius * std::sin(angle));
      }
    }
  }
}

Status Trainer::SetUpGan(const Shape& image_shape) {
  const config::Gan& spec = recipe_.recipe.gan();
  const uint64_t seed = recipe_.recipe.training().seed();
  gan_ = std::make_unique<GanState>();
  GanState& g = *gan_;
  g.image_shape = image_shape;
  g.image_elements = NumElements(image_shape);
  g.noise_dim = spec.noise_dim();
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Model> generator,
                      BuildModel(recipe_, "gan.generator", backend_.get(), {g.noise_dim}));
  if (NumElements(generator->output_shape()) != g.image_elements) {
    return InvalidArgumentError(recipe_.path + ": gan.generator outputs " + ShapeToString(generator->output_shape()) +
                                " per sample, but an image of the dataset is " + ShapeToString(image_shape) + " (" +
                                std::to_string(g.image_elements) + " values)");
  }
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Model> discriminator,
                      BuildModel(recipe_, "gan.discriminator", backend_.get(), image_shape));
  // Distinct seeds: the two models' initialisations must not be correlated.
  generator->InitializeParameters(seed);
  discriminator->InitializeParameters(seed ^ 0x9e3779b97f4a7c15ull);
  LS_RETURN_IF_ERROR(AddModelPart("generator", std::move(generator), spec.generator_optimizer()));
  LS_RETURN_IF_ERROR(AddModelPart("discriminator", std::move(discriminator), spec.discriminator_optimizer()));

  Backend& b = *backend_;
  const int64_t batch = micro_batch_;
  g.noise = BatchTensor(b, batch, {g.noise_dim});
  g.real = BatchTensor(b, batch, image_shape);
  g.fake_grad = BatchTensor(b, batch, image_shape);
  g.real_targets = BatchTensor(b, batch, {1});
  g.fake_targets = BatchTensor(b, batch, {1});
  g.generator_targets = BatchTensor(b, batch, {1});
  g.logit_grad = BatchTensor(b, batch, {1});
  FillTensor(b, &g.real_targets, spec.real_label());
  FillTensor(b, &g.fake_targets, 0.0f);
  FillTensor(b, &g.generator_targets, 1.0f);
  g.host_noise.resize(static_cast<size_t>(batch * g.noise_dim));
  g.host_real.resize(static_cast<size_t>(batch * g.image_elements));
  g.host_labels.resize(static_cast<size_t>(batch));
  g.host_logits.resize(static_cast<size_t>(batch));

  if (rank_ == 0 && !spec.quality_classifier().empty() && spec.quality_samples() > 0) {
    LS_ASSIGN_OR_RETURN(g.classifier, ImageClassifier::Load(spec.quality_classifier(), image_shape));
    // The same classifier on real test images: the scale a generated set is read against.
    const std::vector<EvalSplit> splits = data_->EvalSplits();
    const int split = static_cast<int>(splits.size()) - 1;
    const int64_t n = std::min(spec.quality_samples(), splits.back().items);
    std::vector<float> images(static_cast<size_t>(n * g.image_elements));
    std::vector<int32_t> labels(static_cast<size_t>(n));
    data_->GatherEval(split, 0, n, images.data(), labels.data());
    g.real_reference = g.classifier->Score(images.data(), n);
  }
  return Status::Ok();
}

Result<LossValue> Trainer::GanStep(int64_t epoch, int64_t step_in_epoch, int64_t* samples) {
  GanState& g = *gan_;
  ModelPart& gen = parts_[0];
  ModelPart& disc = parts_[1];
  const config::Recipe& r = recipe_.recipe;
  const std::vector<int64_t> global = data_->GlobalBatch(epoch, step_in_epoch);
  const int64_t global_batch = static_cast<int64_t>(global.size());
  *samples = global_batch;
  const float grad_scale = 1.0f / static_cast<float>(global_batch);
  // [discriminator loss, its correct decisions, checkpoint, preemption, generator loss]
  double local[5] = {0, 0, 0, 0, 0};
  RaiseStepFlags(local);
  const data::RankSliceInfo slice = data::DistributedSampler::RankSlice(global, rank_, world_size_, 1, 0);
  const int64_t n = static_cast<int64_t>(slice.indices.size());
  const uint64_t seed = r.training().seed();
  Backend& b = *backend_;
  Shape image_batch = g.image_shape;
  image_batch.insert(image_batch.begin(), n);
  Tensor noise = g.noise.Subview(0, {n, g.noise_dim});
  Tensor fake_grad = g.fake_grad.Subview(0, image_batch);
  Tensor logit_grad = g.logit_grad.Subview(0, {n, 1});
  StepContext ctx;
  ctx.backend = backend_.get();
  ctx.training = true;
  ctx.seed = seed;
  // Generated images for this rank's rows, from the noise of `stream`; a view of the
  // generator's output, valid until its next Forward.
  auto generate = [&](NoiseStream stream) {
    FillStandardNormal(seed, stream, static_cast<uint64_t>(global_step_), slice.first_position, n, g.noise_dim,
              g.host_noise.data());
    b.CopyFromHost(noise.raw(), g.host_noise.data(), noise.nbytes());
    return gen.model->Forward(ctx, noise).Reshaped(image_batch);
  };
  // Discriminator decisions that match the target (logit > 0 means "real").
  auto count_correct = [&](const Tensor& logits, bool real) {
    b.CopyToHost(g.host_logits.data(), logits.raw(), logits.nbytes());
    int64_t correct = 0;
    for (int64_t i = 0; i < n; ++i) correct += (g.host_logits[static_cast<size_t>(i)] > 0) == real ? 1 : 0;
    return static_cast<double>(correct);
  };

  // Phase 1, the discriminator: real images -> real_label, generated ones -> 0.
  if (zero_stage_ == 0) disc.reducer->BeginStep(global_step_);
  if (n > 0) {
    ctx.step = 2 * static_cast<uint64_t>(global_step_);
    data_->GatherTrain(slice.indices.data(), n, g.host_real.data(), g.host_labels.data());
    for (int64_t i = 0; i < n * g.image_elements; ++i) {
      float& v = g.host_real[static_cast<size_t>(i)];
      v = 2.0f * v - 1.0f;  // the generator's tanh range
    }
    Tensor real = g.real.Subview(0, image_batch);
    b.CopyFromHost(real.raw(), g.host_real.data(), real.nbytes());
    ctx.first_global_row = slice.first_position;
    ctx.grad_beta = 0.0f;
    Tensor logits = disc.model->Forward(ctx, real);
    LossValue v = ComputeLoss(b, LossKind::kBinaryCrossEntropyWithLogits, logits,
                              g.real_targets.Subview(0, {n, 1}), grad_scale, &logit_grad);
    local[0] += v.sum;
    local[1] += count_correct(logits, true);
    BackwardPart(disc, ctx, logit_grad, /*launch_buckets=*/false);

    Tensor fake = generate(kDiscriminatorPhase);
    // Generated rows get their own dropout rows, after the global batch's real ones.
    ctx.first_global_row = slice.first_position + global_batch;
    ctx.grad_beta = 1.0f;
    logits = disc.model->Forward(ctx, fake);
    v = ComputeLoss(b, LossKind::kBinaryCrossEntropyWithLogits, logits, g.fake_targets.Subview(0, {n, 1}),
                    grad_scale, &logit_grad);
    local[0] += v.sum;
    local[1] += count_correct(logits, false);
    BackwardPart(disc, ctx, logit_grad, /*launch_buckets=*/true);
  } else {
    b.ZeroBytes(disc.model->grads().raw(), disc.model->grads().nbytes());
  }
  LS_RETURN_IF_ERROR(SynchronizeAndUpdate(disc));

  // Phase 2, the generator, through the updated discriminator: fresh noise, target
  // "real" (the non-saturating loss -log D(G(z))). The discriminator's parameter
  // gradients computed on the way are discarded (phase 1 overwrites them).
  if (zero_stage_ == 0) gen.reducer->BeginStep(global_step_);
  if (n > 0) {
    ctx.step = 2 * static_cast<uint64_t>(global_step_) + 1;
    ctx.first_global_row = slice.first_position;
    ctx.grad_beta = 0.0f;
    Tensor fake = generate(kGeneratorPhase);
    Tensor logits = disc.model->Forward(ctx, fake);
    LossValue v = ComputeLoss(b, LossKind::kBinaryCrossEntropyWithLogits, logits,
                              g.generator_targets.Subview(0, {n, 1}), grad_scale, &logit_grad);
    local[4] += v.sum;
    BackwardPart(disc, ctx, logit_grad, /*launch_buckets=*/false, &fake_grad);
    Shape generated_shape = gen.model->output_shape();
    generated_shape.insert(generated_shape.begin(), n);
    Tensor generated_grad = fake_grad.Reshaped(generated_shape);
    BackwardPart(gen, ctx, generated_grad, /*launch_buckets=*/true);
  } else {
    b.ZeroBytes(gen.model->grads().raw(), gen.model->grads().nbytes());
  }
  LS_RETURN_IF_ERROR(SynchronizeAndUpdate(gen));

  LS_RETURN_IF_ERROR(AgreeOnStep(local, 5));
  ++global_step_;
  g.epoch_generator_loss += local[4];
  LossValue total;
  total.sum = local[0];
  total.correct = static_cast<int64_t>(local[1]);
  return total;
}

Result<std::string> Trainer::GanEpochReport(EpochMetrics* m, int64_t samples) {
  GanState& g = *gan_;
  const config::Gan& spec = recipe_.recipe.gan();
  const uint64_t seed = recipe_.recipe.training().seed();
  m->has_test = false;
  m->is_gan = true;
  m->generator_loss = samples > 0 ? g.epoch_generator_loss / static_cast<double>(samples) : 0;
  g.epoch_generator_loss = 0;
  std::string text = "D loss " + Fixed(m->train_loss, 4) + " acc " + Fixed(m->train_accuracy, 4) + " | G loss " +
                     Fixed(m->generator_loss, 4);
  if (rank_ != 0) return text;

  // Rank 0 draws samples from fixed noise (the same every epoch, so grids compare).
  Model& generator = *parts_[0].model;
  StepContext ctx;
  ctx.backend = backend_.get();
  ctx.training = false;
  auto draw = [&](NoiseStream stream, int64_t count) {
    std::vector<float> images(static_cast<size_t>(count * g.image_elements));
    constexpr int64_t kChunk = 250;
    std::vector<float> noise(static_cast<size_t>(kChunk * g.noise_dim));
    Tensor z_all = Tensor::Empty(*backend_, {kChunk, g.noise_dim}, DType::kFloat32);
    for (int64_t first = 0; first < count; first += kChunk) {
      const int64_t rows = std::min(kChunk, count - first);
      FillStandardNormal(seed, stream, 0, first, rows, g.noise_dim, noise.data());
      Tensor z = z_all.Subview(0, {rows, g.noise_dim});
      backend_->CopyFromHost(z.raw(), noise.data(), z.nbytes());
      Tensor out = generator.Forward(ctx, z);
      backend_->CopyToHost(images.data() + first * g.image_elements, out.raw(), out.nbytes());
    }
    return images;
  };
  if (spec.grid_rows() > 0 && !options_.run_dir.empty()) {
    const int64_t rows = spec.grid_rows();
    std::vector<float> images = draw(kGridSamples, rows * rows);
    const std::string dir = options_.run_dir + "/samples";
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return IoError("cannot create " + dir + ": " + std::strerror(errno));
    }
    char name[32];
    std::snprintf(name, sizeof(name), "/epoch-%03lld.png", static_cast<long long>(m->epoch));
    m->sample_grid = dir + name;
    // Channels-last images with one channel: each is height x width.
    LS_RETURN_IF_ERROR(WritePng(m->sample_grid, TileImages(images.data(), rows * rows, g.image_shape[0],
                                                          g.image_elements / g.image_shape[0], rows, -1.0f, 1.0f)));
    text += " | samples " + m->sample_grid;
  }
  if (g.classifier) {
    std::vector<float> images = draw(kQualitySamples, spec.quality_samples());
    for (float& v : images) v = 0.5f * (v + 1.0f);  // the classifier's [0, 1] scale
    const ClassifierScores s = g.classifier->Score(images.data(), spec.quality_samples());
    m->quality_confidence = s.confidence;
    m->quality_class_entropy = s.class_entropy;
    m->quality_inception_score = s.inception_score;
    const ClassifierScores& real = g.real_reference;
    text += " | classifier on " + std::to_string(s.samples) + " generated: confidence " + Fixed(s.confidence, 3) +
            ", class entropy " + Fixed(s.class_entropy, 3) + " nats, IS " + Fixed(s.inception_score, 2) +
            " (real test images: " + Fixed(real.confidence, 3) + ", " + Fixed(real.class_entropy, 3) + ", " +
            Fixed(real.inception_score, 2) + ")";
  }
  return text;
}

}  // namespace lockstep
