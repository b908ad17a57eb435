// A quality proxy for generated images: a trained image classifier (a checkpoint
// of recipes/cnn.pbtxt) scores them. Images that look like clothing are classified
// confidently (high mean top-class probability) and, over many samples, spread
// over the classes (high entropy of the mean class distribution, at most ln 10 =
// 2.303 nats for 10 classes). The inception score exp(E[KL(p(y|x) || p(y))])
// combines both (between 1 and the number of classes). Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/core/backend.h"
#include "runtime/core/model.h"

namespace lockstep {

struct ClassifierScores {
  int64_t samples = 0;
  double confidence = 0;       // mean over samples of max_y p(y|x)
  double class_entropy = 0;    // H(mean over samples of p(y|x)), nats
  double inception_score = 0;  // exp(mean over samples of KL(p(y|x) || p(y)))
};

// Scores from class probabilities (samples x classes, rows summing to 1).
ClassifierScores ScoreProbabilities(const std::vector<double>& probabilities, int64_t samples, int64_t classes);

class ImageClassifier {
 public:
  // `path`: a checkpoint directory, or a run directory whose newest valid checkpoint
  // is used. The checkpoint's recipe rebuilds the model, which must take images of
  // `image_shape` and output class logits.
  static Result<std::unique_ptr<ImageClassifier>> Load(const std::string& path, const Shape& image_shape);

  // images: n x image_shape floats in [0, 1] (the classifier's training scale).
  ClassifierScores Score(const float* images, int64_t n);
  const std::string& checkpoint_dir() const { return checkpoint_dir_; }
  int64_t classes() const { return classes_; }

 private:
  ImageClassifier() = default;

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::string checkpoint_dir_;
  Shape image_shape_;
  int64_t classes_ = 0;
};

}  // namespace lockstep
