// SaveCheckpoint: the synchronous, collective save of one checkpoint with the
// commit protocol of DESIGN decision 6 (shards into step-N.tmp/, fsync, gather
// shard records, rank 0 writes the manifest and renames). Called by every rank of
// the coordinator's group with the same meta and its own slices; one call at a time
// per coordinator. CheckpointService (service.h) runs it on a background thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "checkpoints/coordinator.h"
#include "checkpoints/file_system.h"
#include "checkpoints/types.h"
#include "common/status.h"

namespace lockstep::ckpt {

struct WriterOptions {
  std::string run_dir;  // checkpoints go to RUN_DIR/checkpoints/ (shared by all ranks)
  FileSystem* fs = PosixFileSystem();  // not owned
  Coordinator* coordinator = nullptr;  // not owned; nullptr = world size 1
  RetentionPolicy retention;
  std::chrono::milliseconds deadline{300000};  // per gather
};

// Segments are cut at this size so that a reader verifies at most this much more
// than it asked for at each end of a range.
inline constexpr int64_t kMaxSegmentBytes = int64_t{16} << 20;

// Writes, fsyncs and commits RUN_DIR/checkpoints/step-<meta.step>/. Returns the
// committed directory on every rank, or the same error on every rank, naming each
// failing rank and its cause ("rank 1: No space left on device writing
// .../shard-00001-of-00002.bin"); on error the .tmp directory is removed and no
// existing checkpoint is touched. The slices of all ranks must tile every buffer
// exactly. A committed step-N of the same step is replaced only after the new one
// is durable. Retention runs after the commit; its failure is only logged.
// When the coordinator itself fails (a peer missed the deadline), the error is
// returned without cleanup: RemoveStaleTemporaries at the next start-up does it.
Result<std::string> SaveCheckpoint(const WriterOptions& options, const CheckpointMeta& meta,
                                   const std::vector<ShardSlice>& slices);

}  // namespace lockstep::ckpt
