#include "checkpoints/verify.h"

#include <sstream>

#include "checkpoints/catalog.h"
#include "checkpoints/reader.h"

namespace lockstep::ckpt {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  return lines;
}

std::string ArchitectureDifference(const std::string& saved, const std::string& current) {
  const auto a = Lines(saved), b = Lines(current);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "(nothing)", y = i < b.size() ? b[i] : "(nothing)";
    if (x != y) {
      return "line " + std::to_string(i + 1) + " of the architecture: checkpoint has '" + x +
             "', the current model has '" + y + "'";
    }
  }
  return "the architecture fingerprints differ";
}

std::string Num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

Status VerifyCheckpoint(const std::string& dir, bool checksums, FileSystem* fs) {
  LS_ASSIGN_OR_RETURN(auto reader, CheckpointReader::Open(dir, fs));
  if (!checksums) return Status::Ok();
  return reader->VerifyAll();
}

Result<std::optional<std::string>> FindLatestValidCheckpoint(const std::string& run_dir,
                                                             std::vector<std::string>* warnings,
                                                             FileSystem* fs) {
  LS_ASSIGN_OR_RETURN(std::vector<CheckpointEntry> entries, ListCheckpoints(run_dir, fs));
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    Status s = VerifyCheckpoint(it->path, true, fs);
    if (s.ok()) return std::optional<std::string>(it->path);
    if (warnings != nullptr)
      warnings->push_back("skipping checkpoint " + it->path + ": " + s.message());
  }
  return std::optional<std::string>();
}

Status CheckCompatible(const CheckpointMeta& saved, const CheckpointMeta& current,
                       std::vector<std::string>* warnings) {
  if (saved.architecture_fingerprint != current.architecture_fingerprint ||
      saved.architecture != current.architecture) {
    return FailedPreconditionError(
        "checkpoint is of a different model: " +
        ArchitectureDifference(saved.architecture, current.architecture));
  }
  for (const BufferLayout& want : current.buffers) {
    const BufferLayout* have = nullptr;
    for (const BufferLayout& b : saved.buffers) {
      if (b.name == want.name) have = &b;
    }
    if (have == nullptr)
      return FailedPreconditionError("checkpoint has no buffer '" + want.name + "'");
    if (have->elements != want.elements || have->dtype != want.dtype) {
      return FailedPreconditionError(
          "buffer '" + want.name + "' has " + std::to_string(have->elements) + " " + have->dtype +
          " elements in the checkpoint, " + std::to_string(want.elements) + " " + want.dtype +
          " in the current model");
    }
  }
  if (warnings == nullptr) return Status::Ok();
  if (saved.optimizer_kind != current.optimizer_kind) {
    warnings->push_back("optimizer changed from '" + saved.optimizer_kind + "' to '" +
                        current.optimizer_kind + "'");
  }
  for (const auto& [name, value] : current.hyperparameters) {
    auto it = saved.hyperparameters.find(name);
    if (it == saved.hyperparameters.end()) {
      warnings->push_back("hyperparameter " + name + " = " + Num(value) +
                          " is new (not in the checkpoint)");
    } else if (it->second != value) {
      warnings->push_back("hyperparameter " + name + " changed from " + Num(it->second) + " to " +
                          Num(value));
    }
  }
  if (saved.recipe_hash != current.recipe_hash)
    warnings->push_back("the recipe differs from the checkpoint's");
  return Status::Ok();
}

}  // namespace lockstep::ckpt
