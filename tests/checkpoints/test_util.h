// Helpers shared by the checkpoint tests: scratch directories, deterministic
// buffers and metadata, and running a collective save on in-process thread ranks.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"

namespace lockstep::ckpt::testing {

// A fresh directory under the test temp dir, removed (rm -rf) on destruction.
class ScopedTempDir {
 public:
  ScopedTempDir();
  ~ScopedTempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Buffer values: exact, distinct per buffer and element, changed by `salt`.
std::vector<float> MakeValues(int64_t n, float salt);

// A model with buffers "params" (tensors w1 (3,4), b1 (4), w2 (4,5), b2 (5) = 41
// elements, padded to `params_elements` >= 41) and "opt.m"/"opt.v" of the same size.
CheckpointMeta MakeMeta(int64_t step, int64_t params_elements = 41);

struct TestState {
  CheckpointMeta meta;
  std::map<std::string, std::vector<float>> buffers;  // full contents by name
};
TestState MakeState(int64_t step, int64_t params_elements = 41, float salt = 0);

// Rank r's slices of every buffer under an even split into `world` parts.
std::vector<ShardSlice> EvenSlices(const TestState& s, int world, int rank);

struct RankOutcome {
  Status status;
  std::string path;
};
// Runs SaveCheckpoint on `world` thread ranks with even slices. `fs_for_rank`, when
// set, supplies each rank's filesystem (for fault injection); `edit_slices`, when set,
// may alter a rank's slices before it saves (for bad-input tests).
std::vector<RankOutcome> SaveOnRanks(
    const std::string& run_dir, const TestState& s, int world, RetentionPolicy retention = {},
    const std::function<FileSystem*(int)>& fs_for_rank = nullptr,
    const std::function<void(int, std::vector<ShardSlice>*)>& edit_slices = nullptr);

// Reads every byte of a file / writes bytes at an offset (for corruption tests).
std::string ReadAll(const std::string& path);
void WriteAll(const std::string& path, const std::string& bytes);
void FlipByte(const std::string& path, int64_t offset);

}  // namespace lockstep::ckpt::testing
