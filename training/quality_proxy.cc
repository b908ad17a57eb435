#include "training/quality_proxy.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "checkpoints/checkpoint.h"
#include "runtime/core/recipe.h"
#include "training/checkpoint_model.h"

namespace lockstep {
namespace {

constexpr int64_t kScoreBatch = 250;

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

ClassifierScores ScoreProbabilities(const std::vector<double>& p, int64_t samples, int64_t classes) {
  ClassifierScores s;
  s.samples = samples;
  if (samples <= 0 || classes <= 0) return s;
  std::vector<double> marginal(static_cast<size_t>(classes), 0.0);
  for (int64_t i = 0; i < samples; ++i) {
    const double* row = &p[static_cast<size_t>(i * classes)];
    s.confidence += *std::max_element(row, row + classes);
    for (int64_t c = 0; c < classes; ++c) marginal[static_cast<size_t>(c)] += row[c];
  }
  s.confidence /= static_cast<double>(samples);
  for (double& m : marginal) m /= static_cast<double>(samples);
  for (double m : marginal) {
    if (m > 0) s.class_entropy -= m * std::log(m);
  }
  double kl = 0;
  for (int64_t i = 0; i < samples; ++i) {
    const double* row = &p[static_cast<size_t>(i * classes)];
    for (int64_t c = 0; c < classes; ++c) {
      if (row[c] > 0) kl += row[c] * (std::log(row[c]) - std::log(marginal[static_cast<size_t>(c)]));
    }
  }
  s.inception_score = std::exp(kl / static_cast<double>(samples));
  return s;
}

Result<std::unique_ptr<ImageClassifier>> ImageClassifier::Load(const std::string& path, const Shape& image_shape) {
  const std::string what = "gan.quality_classifier " + path;
  if (!IsDirectory(path)) {
    return NotFoundError(what + ": no such directory (give a checkpoint of recipes/cnn.pbtxt, or its run directory)");
  }
  std::string dir = path;
  if (IsDirectory(ckpt::CheckpointsDir(path))) {
    std::vector<std::string> warnings;
    auto found = ckpt::FindLatestValidCheckpoint(path, &warnings);
    if (!found.ok()) return CheckpointError(what + ": " + found.status().message());
    if (!found->has_value()) return CheckpointError(what + ": the run directory holds no valid checkpoint");
    dir = found->value();
  }
  auto reader = ckpt::CheckpointReader::Open(dir);
  if (!reader.ok()) return CheckpointError(what + ": " + reader.status().message());
  const ckpt::CheckpointMeta& meta = (*reader)->meta();
  LS_ASSIGN_OR_RETURN(LoadedRecipe recipe, ParseRecipe(meta.recipe_text, dir + "/manifest recipe"));
  if (recipe.recipe.has_gan() || recipe.recipe.data().dataset() != "fashion_mnist") {
    return InvalidArgumentError(what + " is not an image classifier's checkpoint (its recipe is " +
                                (recipe.recipe.has_gan() ? "a GAN" : "a " + recipe.recipe.data().dataset() + " model") +
                                ")");
  }
  std::unique_ptr<ImageClassifier> c(new ImageClassifier());
  c->backend_ = CreateCpuBackend(ToGemmPrecision(recipe.recipe));  // the classifier's training numerics
  c->checkpoint_dir_ = dir;
  c->image_shape_ = image_shape;
  Shape input(recipe.recipe.model().input_shape().begin(), recipe.recipe.model().input_shape().end());
  if (input.empty()) input = image_shape;
  if (NumElements(input) != NumElements(image_shape)) {
    return InvalidArgumentError(what + ": the classifier takes inputs of shape " + ShapeToString(input) +
                                ", the generated images are " + ShapeToString(image_shape));
  }
  LS_ASSIGN_OR_RETURN(c->model_, LoadCheckpointModel(**reader, recipe, c->backend_.get(), input, 0, what));
  const Shape& out = c->model_->output_shape();
  if (out.size() != 1 || out[0] < 2) {
    return InvalidArgumentError(what + ": the model outputs " + ShapeToString(out) + ", not class logits");
  }
  c->classes_ = out[0];
  return c;
}

ClassifierScores ImageClassifier::Score(const float* images, int64_t n) {
  const int64_t per_image = NumElements(image_shape_);
  std::vector<double> probabilities(static_cast<size_t>(n * classes_));
  std::vector<float> logits(static_cast<size_t>(kScoreBatch * classes_));
  Shape shape = model_->input_shape();
  shape.insert(shape.begin(), kScoreBatch);
  Tensor batch = Tensor::Empty(*backend_, shape, DType::kFloat32);
  StepContext ctx;
  ctx.backend = backend_.get();
  ctx.training = false;
  for (int64_t first = 0; first < n; first += kScoreBatch) {
    const int64_t count = std::min(kScoreBatch, n - first);
    shape[0] = count;
    Tensor x = batch.Subview(0, shape);
    backend_->CopyFromHost(x.raw(), images + first * per_image, x.nbytes());
    Tensor out = model_->Forward(ctx, x);
    backend_->CopyToHost(logits.data(), out.raw(), out.nbytes());
    for (int64_t i = 0; i < count; ++i) {
      const float* row = &logits[static_cast<size_t>(i * classes_)];
      const double top = *std::max_element(row, row + classes_);
      double sum = 0;
      double* p = &probabilities[static_cast<size_t>((first + i) * classes_)];
      for (int64_t c = 0; c < classes_; ++c) sum += p[c] = std::exp(static_cast<double>(row[c]) - top);
      for (int64_t c = 0; c < classes_; ++c) p[c] /= sum;
    }
  }
  return ScoreProbabilities(probabilities, n, classes_);
}

}  // namespace lockstep
