// An in-memory labelled image dataset (uint8 pixels, NHWC) and the batch gather
// that turns sample indices into normalised float input. A loaded dataset is
// immutable: any number of threads may call GatherBatch on it concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/data/index_range.h"

namespace lockstep {
namespace data {

struct ImageDataset {
  int64_t count = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 1;
  int32_t num_classes = 0;
  std::vector<uint8_t> pixels;  // (count, height, width, channels), NHWC
  std::vector<int32_t> labels;  // (count), each in [0, num_classes)

  int64_t SampleElements() const { return height * width * channels; }
};

// Loads an IDX image file (N, H, W) of unsigned bytes and an IDX label file (N)
// whose labels must all lie in [0, num_classes). Errors name both files.
Result<ImageDataset> LoadIdxImageDataset(const std::string& images_path,
                                         const std::string& labels_path, int32_t num_classes);

// Copies samples indices[0..n) into images_out ((n, H, W, C) floats, each pixel
// / 255 so in [0, 1]) and their labels into labels_out (may be null). Indices
// outside [0, d.count) are a broken invariant (abort), not an expected error.
void GatherBatch(const ImageDataset& d, const int64_t* indices, int64_t n, float* images_out,
                 int32_t* labels_out);

}  // namespace data
}  // namespace lockstep
