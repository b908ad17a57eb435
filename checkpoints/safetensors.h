// Export of a checkpoint's parameters to one safetensors file (the format of the
// Hugging Face `safetensors` library: 8-byte little-endian header length, a JSON
// header, then the raw little-endian tensor data), and a small reader for tests and
// tools. Thread-safe (no shared state).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep::ckpt {

// Writes the "params" buffer of the checkpoint in `checkpoint_dir` (or every model's
// "NAME.params", e.g. a GAN's generator and discriminator) as F32 tensors, one per
// TensorInfo (or one tensor named after the buffer when it names none), with
// __metadata__ holding step, epoch, world size, version and hashes. The file is
// written to OUT.tmp and renamed, so a failed export leaves no partial file.
Status ExportSafetensors(const std::string& checkpoint_dir, const std::string& out_file);

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // "F32", ...
  std::vector<int64_t> shape;
  std::string data;                     // raw bytes
  std::vector<float> AsFloats() const;  // for dtype F32
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::vector<SafetensorsTensor> tensors;  // in header order
  const SafetensorsTensor* Find(const std::string& name) const;
};

// Reads and checks a whole safetensors file (header JSON, offsets inside the data
// and contiguous, sizes matching dtype and shape). DataLoss on a malformed file.
Result<SafetensorsFile> ReadSafetensors(const std::string& path);

}  // namespace lockstep::ckpt
