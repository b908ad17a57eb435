#include "training/training_data.h"

#include <cmath>

#include "runtime/data/fashion_mnist.h"
#include "runtime/data/sampler.h"
#include "runtime/data/sequence_sampler.h"
#include "runtime/data/text_dataset.h"

namespace lockstep {
namespace {

constexpr char kDefaultTextCorpus[] = "/usr/share/games/fortunes";

class ImageData : public TrainingData {
 public:
  static Result<std::unique_ptr<TrainingData>> Load(const LoadedRecipe& recipe, const std::string& dir) {
    const config::Recipe& r = recipe.recipe;
    std::unique_ptr<ImageData> d(new ImageData());
    LS_ASSIGN_OR_RETURN(d->mnist_, data::LoadFashionMnist(dir, r.data().validation_samples()));
    data::IndexRange train = d->mnist_.TrainRange();
    if (r.data().train_samples() < 0 || r.data().train_samples() > train.size()) {
      return InvalidArgumentError(recipe.path + ": data.train_samples " + std::to_string(r.data().train_samples()) +
                                  " is outside [0, " + std::to_string(train.size()) +
                                  "] (the training split after validation_samples)");
    }
    if (r.data().train_samples() > 0) train.end = train.begin + r.data().train_samples();
    data::SamplerOptions so;
    so.range_begin = train.begin;
    so.range_end = train.end;
    so.global_batch = r.training().global_batch_size();
    so.seed = r.training().seed();
    so.shuffle = true;
    so.drop_last = r.training().drop_last();
    d->sampler_ = std::make_unique<data::DistributedSampler>(so);
    if (d->sampler_->StepsPerEpoch() == 0) {
      return InvalidArgumentError(recipe.path + ": training.global_batch_size " + std::to_string(so.global_batch) +
                                  " is larger than the " + std::to_string(train.size()) + " training samples");
    }
    return std::unique_ptr<TrainingData>(std::move(d));
  }

  Shape sample_shape() const override {
    return {mnist_.train.height, mnist_.train.width, mnist_.train.channels};
  }
  int64_t targets_per_sample() const override { return 1; }
  std::string Describe() const override {
    return "Fashion-MNIST, " + std::to_string(sampler_->NumSamples()) + " training images";
  }
  int64_t StepsPerEpoch() const override { return sampler_->StepsPerEpoch(); }
  std::vector<int64_t> GlobalBatch(int64_t epoch, int64_t step) const override {
    return sampler_->GlobalBatch(epoch, step);
  }
  void GatherTrain(const int64_t* ids, int64_t n, float* inputs, int32_t* targets) const override {
    data::GatherBatch(mnist_.train, ids, n, inputs, targets);
  }
  std::vector<EvalSplit> EvalSplits() const override {
    return {{"val", mnist_.ValidationRange().size()}, {"test", mnist_.test.count}};
  }
  void GatherEval(int split, int64_t first, int64_t n, float* inputs, int32_t* targets) const override {
    const data::ImageDataset& set = split == 0 ? mnist_.train : mnist_.test;
    const int64_t base = split == 0 ? mnist_.ValidationRange().begin : 0;
    ids_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids_[static_cast<size_t>(i)] = base + first + i;
    data::GatherBatch(set, ids_.data(), n, inputs, targets);
  }

 private:
  data::FashionMnist mnist_;
  std::unique_ptr<data::DistributedSampler> sampler_;
  mutable std::vector<int64_t> ids_;  // scratch of the (single) training thread
};

class TextData : public TrainingData {
 public:
  static Result<std::unique_ptr<TrainingData>> Load(const LoadedRecipe& recipe, const std::string& dir) {
    const config::Recipe& r = recipe.recipe;
    std::unique_ptr<TextData> d(new TextData());
    d->seq_len_ = r.data().sequence_length();
    LS_ASSIGN_OR_RETURN(d->text_, data::TextDataset::Load(dir.empty() ? kDefaultTextCorpus : dir));
    const double fraction = r.data().has_validation_fraction() ? r.data().validation_fraction() : 0.1;
    LS_ASSIGN_OR_RETURN(d->split_, data::SplitByPosition(d->text_.size(), fraction, d->seq_len_ + 1));
    data::SequenceSamplerOptions so;
    so.range = d->split_.train;
    so.seq_len = d->seq_len_;
    so.global_batch = r.training().global_batch_size();
    so.seed = r.training().seed();
    auto sampler = data::SequenceSampler::Create(so);
    if (!sampler.ok()) return sampler.status().WithContext(recipe.path);
    d->sampler_ = std::move(sampler).value();
    return std::unique_ptr<TrainingData>(std::move(d));
  }

  Shape sample_shape() const override { return {seq_len_}; }
  int64_t targets_per_sample() const override { return seq_len_; }
  int64_t vocab_size() const override { return text_.vocab.size(); }
  std::string Describe() const override {
    return "text, " + std::to_string(text_.size()) + " characters from " + std::to_string(text_.files.size()) +
           " file(s), vocabulary " + std::to_string(text_.vocab.size()) + ", windows of " +
           std::to_string(seq_len_);
  }
  int64_t StepsPerEpoch() const override { return sampler_->StepsPerEpoch(); }
  std::vector<int64_t> GlobalBatch(int64_t epoch, int64_t step) const override {
    return sampler_->GlobalBatch(epoch, step);
  }
  void GatherTrain(const int64_t* ids, int64_t n, float* inputs, int32_t* targets) const override {
    data::GatherWindows(text_.tokens, ids, n, seq_len_, inputs, targets);
  }
  std::vector<EvalSplit> EvalSplits() const override {
    return {{"val", data::NumValidationWindows(split_.validation, seq_len_)}};
  }
  void GatherEval(int, int64_t first, int64_t n, float* inputs, int32_t* targets) const override {
    starts_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      starts_[static_cast<size_t>(i)] = data::ValidationWindowStart(split_.validation, seq_len_, first + i);
    }
    data::GatherWindows(text_.tokens, starts_.data(), n, seq_len_, inputs, targets);
  }
  std::map<std::string, std::string> CheckpointExtras() const override {
    return {{"vocabulary", text_.vocab.Serialize()}};
  }

  const data::TextDataset& text() const { return text_; }
  const data::TextSplit& split() const { return split_; }

 private:
  int64_t seq_len_ = 0;
  data::TextDataset text_;
  data::TextSplit split_;
  std::unique_ptr<data::SequenceSampler> sampler_;
  mutable std::vector<int64_t> starts_;  // scratch of the (single) training thread
};

}  // namespace

Result<std::unique_ptr<TrainingData>> LoadTrainingData(const LoadedRecipe& recipe, const std::string& dir_override) {
  const std::string dir = dir_override.empty() ? recipe.recipe.data().path() : dir_override;
  if (recipe.recipe.data().dataset() == "text") return TextData::Load(recipe, dir);
  return ImageData::Load(recipe, dir.empty() ? data::kFashionMnistDefaultDir : dir);
}

}  // namespace lockstep
