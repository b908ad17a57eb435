// Integrity checks of whole checkpoints and the choice of the checkpoint to resume
// from. A directory counts as a checkpoint only when its manifest parses and
// validates, every shard exists with its recorded size, and (in a full check) every
// segment's xxHash64 matches. Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "checkpoints/file_system.h"
#include "checkpoints/types.h"
#include "common/status.h"

namespace lockstep::ckpt {

// OK, or DataLoss / NotFound naming the shard file and the byte offset of the first
// defect. With checksums=false only the manifest and the shard sizes are checked.
Status VerifyCheckpoint(const std::string& dir, bool checksums = true,
                        FileSystem* fs = PosixFileSystem());

// The newest checkpoint under RUN_DIR/checkpoints that verifies fully; every newer
// one that does not is described in *warnings (may be null). std::nullopt when there
// is none (including no checkpoints directory); an error only when listing fails.
Result<std::optional<std::string>> FindLatestValidCheckpoint(const std::string& run_dir,
                                                             std::vector<std::string>* warnings,
                                                             FileSystem* fs = PosixFileSystem());

// Whether a checkpoint can be loaded into the current model: FailedPrecondition
// naming the first difference when the architecture (fingerprint; the first
// differing line of the summaries) or a buffer layout differs; changed
// hyperparameters or optimizer settings are allowed and listed in *warnings.
Status CheckCompatible(const CheckpointMeta& saved, const CheckpointMeta& current,
                       std::vector<std::string>* warnings);

}  // namespace lockstep::ckpt
