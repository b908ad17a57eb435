// TrainingData: what the training loop trains and evaluates on, behind one seam so
// the loop does not care whether a "sample" is a Fashion-MNIST image with a class
// label or a window of characters with a next-character target per position.
// Both orders are pure functions of (seed, epoch, step) and a global batch is the
// same samples for every world size (DESIGN decision 5); each rank takes its slice
// with DistributedSampler::RankSlice. Immutable after loading: thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/core/recipe.h"
#include "runtime/core/tensor.h"

namespace lockstep {

struct EvalSplit {
  std::string name;   // "val", "test"
  int64_t items = 0;  // images, or windows of sequence_length characters
};

class TrainingData {
 public:
  virtual ~TrainingData() = default;
  virtual Shape sample_shape() const = 0;          // the model's per-sample input
  virtual int64_t targets_per_sample() const = 0;  // 1: a class label; T: one per position
  virtual int64_t vocab_size() const { return 0; }
  virtual std::string Describe() const = 0;
  virtual int64_t StepsPerEpoch() const = 0;
  // Sample ids of global batch `step` of `epoch`.
  virtual std::vector<int64_t> GlobalBatch(int64_t epoch, int64_t step) const = 0;
  // Inputs (n x sample_shape floats) and targets (n x targets_per_sample) of ids.
  virtual void GatherTrain(const int64_t* ids, int64_t n, float* inputs, int32_t* targets) const = 0;
  virtual std::vector<EvalSplit> EvalSplits() const = 0;
  // Items [first, first + n) of evaluation split `split`.
  virtual void GatherEval(int split, int64_t first, int64_t n, float* inputs, int32_t* targets) const = 0;
  // Named blobs a checkpoint must carry to be usable on its own (the vocabulary).
  virtual std::map<std::string, std::string> CheckpointExtras() const { return {}; }
};

// The recipe's dataset: "fashion_mnist" (default) or "text". `dir_override` replaces
// data.path (tests). Errors name the file and the defect.
Result<std::unique_ptr<TrainingData>> LoadTrainingData(const LoadedRecipe& recipe, const std::string& dir_override);

}  // namespace lockstep
