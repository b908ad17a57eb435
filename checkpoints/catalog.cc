#include "checkpoints/catalog.h"

#include <algorithm>

#include "checkpoints/manifest.h"

namespace lockstep::ckpt {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Result<std::vector<CheckpointEntry>> ListCheckpoints(const std::string& run_dir, FileSystem* fs) {
  const std::string dir = CheckpointsDir(run_dir);
  std::vector<CheckpointEntry> out;
  if (!fs->Exists(dir)) return out;
  LS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs->ListDir(dir));
  for (const std::string& name : names) {
    int64_t step = 0;
    if (!ParseStepDirName(name, &step)) continue;
    const std::string path = JoinPath(dir, name);
    if (fs->IsDirectory(path)) out.push_back({path, step});
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step < b.step; });
  return out;
}

Status RemoveStaleTemporaries(const std::string& run_dir, FileSystem* fs) {
  const std::string dir = CheckpointsDir(run_dir);
  if (!fs->Exists(dir)) return Status::Ok();
  LS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs->ListDir(dir));
  for (const std::string& name : names) {
    if (name.rfind("step-", 0) == 0 && EndsWith(name, ".tmp")) {
      LS_RETURN_IF_ERROR(fs->RemoveAll(JoinPath(dir, name)));
    }
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ApplyRetention(const std::string& run_dir,
                                                const RetentionPolicy& policy, FileSystem* fs,
                                                int64_t protect_step) {
  LS_ASSIGN_OR_RETURN(std::vector<CheckpointEntry> entries, ListCheckpoints(run_dir, fs));
  std::vector<std::string> removed;
  if (policy.keep_last <= 0) return removed;
  const size_t keep_from = entries.size() > static_cast<size_t>(policy.keep_last)
                               ? entries.size() - policy.keep_last
                               : 0;
  for (size_t i = 0; i < keep_from; ++i) {
    const CheckpointEntry& e = entries[i];
    if (policy.keep_every_steps > 0 && e.step % policy.keep_every_steps == 0) continue;
    if (e.step == protect_step) continue;
    const std::string doomed = e.path + ".del.tmp";
    LS_RETURN_IF_ERROR(fs->Rename(e.path, doomed));
    LS_RETURN_IF_ERROR(fs->RemoveAll(doomed));
    removed.push_back(e.path);
  }
  return removed;
}

}  // namespace lockstep::ckpt
