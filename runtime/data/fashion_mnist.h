// Fashion-MNIST loader: train (with a held-out validation tail) and test splits
// as ImageDatasets. Loading has no shared state; any thread may call it. The
// returned FashionMnist is immutable after loading.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "runtime/data/image_dataset.h"
#include "runtime/data/index_range.h"

namespace lockstep {
namespace data {

// Where Debian's dataset-fashion-mnist package installs the files.
constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
constexpr int64_t kFashionMnistDefaultValidation = 5000;
constexpr int32_t kFashionMnistClasses = 10;

struct FashionMnist {
  ImageDataset train;            // all 60,000 training samples (training + validation)
  ImageDataset test;             // the 10,000 test samples
  int64_t validation_count = 0;  // the last validation_count samples of `train`

  // Samples used for training: [0, train.count - validation_count).
  IndexRange TrainRange() const { return {0, train.count - validation_count}; }
  // Held-out validation samples: the tail [train.count - validation_count, train.count).
  IndexRange ValidationRange() const { return {train.count - validation_count, train.count}; }
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from `dir` (each falls
// back to the name without .gz when the .gz is absent). Errors when a file is
// missing or bad, or when validation_count < 0 or >= the training count.
Result<FashionMnist> LoadFashionMnist(const std::string& dir = kFashionMnistDefaultDir,
                                      int64_t validation_count = kFashionMnistDefaultValidation);

}  // namespace data
}  // namespace lockstep
