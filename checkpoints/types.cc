#include "checkpoints/types.h"

#include <cstdio>

#include "common/check.h"

namespace lockstep::ckpt {

std::pair<int64_t, int64_t> EvenSplit(int64_t elements, int parts, int index) {
  LS_CHECK_GE(elements, 0);
  LS_CHECK_GT(parts, 0);
  LS_CHECK(index >= 0 && index < parts) << "index " << index << " of " << parts;
  const int64_t base = elements / parts, extra = elements % parts;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

std::string CheckpointsDir(const std::string& run_dir) {
  if (!run_dir.empty() && run_dir.back() == '/') return run_dir + "checkpoints";
  return run_dir + "/checkpoints";
}

std::string StepDirName(int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string ShardFileName(int rank, int world_size) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "shard-%05d-of-%05d.bin", rank, world_size);
  return buf;
}

}  // namespace lockstep::ckpt
