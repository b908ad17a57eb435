// Image dataset loading (two IDX files) and the float batch gather.
#include "runtime/data/image_dataset.h"

#include <cstring>

#include "common/check.h"
#include "runtime/data/idx_reader.h"

namespace lockstep {
namespace data {
namespace {

std::string DimsToString(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

// dst[e] = src[e] / 255.0f, exactly (a true division, never * (1/255)). Blocks of
// 16 with a constant trip count let -O2's cheap vectoriser use convert + divps.
void NormalizeRow(const uint8_t* __restrict src, float* __restrict dst, int64_t n) {
  int64_t e = 0;
  for (; e + 16 <= n; e += 16) {
    for (int k = 0; k < 16; ++k) dst[e + k] = static_cast<float>(src[e + k]) / 255.0f;
  }
  for (; e < n; ++e) dst[e] = static_cast<float>(src[e]) / 255.0f;
}

}  // namespace

Result<ImageDataset> LoadIdxImageDataset(const std::string& images_path,
                                         const std::string& labels_path, int32_t num_classes) {
  if (num_classes <= 0) {
    return InvalidArgumentError("num_classes must be > 0 to load " + labels_path + ", got " +
                                std::to_string(num_classes));
  }
  LS_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  LS_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));
  if (images.dims.size() != 3) {
    return InvalidArgumentError("image file " + images_path + " has shape " +
                                DimsToString(images.dims) +
                                ", expected 3 dimensions (count, height, width)");
  }
  if (labels.dims.size() != 1) {
    return InvalidArgumentError("label file " + labels_path + " has shape " +
                                DimsToString(labels.dims) + ", expected 1 dimension (count)");
  }
  if (images.dims[0] != labels.dims[0]) {
    return InvalidArgumentError("count mismatch: image file " + images_path + " holds " +
                                std::to_string(images.dims[0]) + " images but label file " +
                                labels_path + " holds " + std::to_string(labels.dims[0]) +
                                " labels");
  }
  ImageDataset d;
  d.count = images.dims[0];
  d.height = images.dims[1];
  d.width = images.dims[2];
  d.channels = 1;
  d.num_classes = num_classes;
  d.labels.resize(static_cast<size_t>(d.count));
  for (int64_t i = 0; i < d.count; ++i) {
    int32_t v = labels.bytes[static_cast<size_t>(i)];
    if (v >= num_classes) {
      return InvalidArgumentError("label file " + labels_path + ": label at index " +
                                  std::to_string(i) + " is " + std::to_string(v) +
                                  ", expected 0.." + std::to_string(num_classes - 1) +
                                  " (num_classes " + std::to_string(num_classes) + ")");
    }
    d.labels[static_cast<size_t>(i)] = v;
  }
  d.pixels = std::move(images.bytes);
  return d;
}

void GatherBatch(const ImageDataset& d, const int64_t* indices, int64_t n, float* images_out,
                 int32_t* labels_out) {
  const int64_t elems = d.SampleElements();
  LS_CHECK(n == 0 || images_out != nullptr)
      << "GatherBatch: null images_out for " << n << " samples";
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = indices[i];
    LS_CHECK(s >= 0 && s < d.count) << "GatherBatch: sample index " << s << " at batch position "
                                    << i << " outside [0, " << d.count << ")";
    const uint8_t* src = d.pixels.data() + s * elems;
    float* dst = images_out + i * elems;
    NormalizeRow(src, dst, elems);
    if (labels_out != nullptr) labels_out[i] = d.labels[static_cast<size_t>(s)];
  }
}

}  // namespace data
}  // namespace lockstep
