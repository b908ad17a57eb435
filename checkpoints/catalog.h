// The checkpoints of a run directory: listing committed step directories, removing
// stale temporaries left by a crash, and retention. A run's checkpoints live in
// RUN_DIR/checkpoints/step-NNNNNNNN/; names ending in ".tmp" are never checkpoints.
// Thread-safe, but RemoveStaleTemporaries and ApplyRetention must not race a save
// of the same run (call them from rank 0, at start-up or from the writer).
#pragma once

#include <string>
#include <vector>

#include "checkpoints/file_system.h"
#include "checkpoints/types.h"
#include "common/status.h"

namespace lockstep::ckpt {

// Committed step-NNNNNNNN directories, ascending step; ignores *.tmp and anything
// else. An absent RUN_DIR/checkpoints gives an empty list. Does not verify them.
Result<std::vector<CheckpointEntry>> ListCheckpoints(const std::string& run_dir,
                                                     FileSystem* fs = PosixFileSystem());

// Removes RUN_DIR/checkpoints/step-*.tmp (shards of a save that never committed).
// Call once at start-up, before the first save.
Status RemoveStaleTemporaries(const std::string& run_dir, FileSystem* fs = PosixFileSystem());

// Deletes the committed checkpoints that `policy` does not keep; returns their paths.
// Each is first renamed to step-N.del.tmp, so a crash mid-delete leaves only a
// temporary (never a half-deleted "checkpoint"). `protect_step` (the one just
// saved) is always kept, even when checkpoints of later steps exist (e.g. left
// by a run that resumed from an older checkpoint).
Result<std::vector<std::string>> ApplyRetention(const std::string& run_dir,
                                                const RetentionPolicy& policy,
                                                FileSystem* fs = PosixFileSystem(),
                                                int64_t protect_step = -1);

}  // namespace lockstep::ckpt
