#include "checkpoints/writer.h"

#include <xxhash.h>

#include <algorithm>

#include "checkpoints/catalog.h"
#include "checkpoints/manifest.h"
#include "common/log.h"

namespace lockstep::ckpt {
namespace {

proto::RankReport ErrorReport(const Status& s) {
  proto::RankReport r;
  r.set_code(static_cast<int>(s.code()));
  r.set_error(s.message());
  return r;
}

// Exchanges one report per rank. A failed exchange (peer time-out) is returned as is.
Result<std::vector<proto::RankReport>> Exchange(Coordinator* coord, const proto::RankReport& mine,
                                                std::chrono::milliseconds deadline,
                                                const std::string& phase) {
  auto gathered = coord->AllGather(mine.SerializeAsString(), deadline);
  if (!gathered.ok()) return gathered.status().WithContext("checkpoint " + phase);
  std::vector<proto::RankReport> reports(gathered->size());
  for (size_t r = 0; r < gathered->size(); ++r) {
    if (!reports[r].ParseFromString((*gathered)[r])) {
      reports[r] = ErrorReport(InternalError("unreadable report from rank " + std::to_string(r)));
    }
  }
  return reports;
}

// OK when every report is OK, else one error naming every failing rank.
Status Combine(const std::vector<proto::RankReport>& reports, int64_t step) {
  std::string msg;
  StatusCode code = StatusCode::kOk;
  for (size_t r = 0; r < reports.size(); ++r) {
    if (reports[r].code() == 0) continue;
    if (code == StatusCode::kOk) code = static_cast<StatusCode>(reports[r].code());
    msg += (msg.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + ": " +
           reports[r].error();
  }
  if (code == StatusCode::kOk) return Status::Ok();
  return Status(code, "checkpoint of step " + std::to_string(step) + " not saved: " + msg);
}

Status CheckInputs(const CheckpointMeta& meta, const std::vector<ShardSlice>& slices, int world) {
  if (meta.step < 0)
    return InvalidArgumentError("checkpoint step " + std::to_string(meta.step) + " < 0");
  if (world > kMaxWorldSize)
    return InvalidArgumentError("world size " + std::to_string(world) + " too large");
  const size_t n = meta.rng_states.size();
  if (n > 1 && n != static_cast<size_t>(world)) {
    return InvalidArgumentError(std::to_string(n) + " rng states for world size " +
                                std::to_string(world) + " (pass this rank's only, or all)");
  }
  Status layout = ValidateLayout(meta);
  if (!layout.ok()) return InvalidArgumentError(layout.message());
  for (const ShardSlice& s : slices) {
    auto it = std::find_if(meta.buffers.begin(), meta.buffers.end(),
                           [&](const BufferLayout& b) { return b.name == s.buffer; });
    if (it == meta.buffers.end())
      return InvalidArgumentError("slice of unknown buffer '" + s.buffer + "'");
    if (s.begin < 0 || s.begin > s.end || s.end > it->elements) {
      return InvalidArgumentError("slice [" + std::to_string(s.begin) + ", " +
                                  std::to_string(s.end) + ") outside buffer '" + s.buffer +
                                  "' of " + std::to_string(it->elements) + " elements");
    }
    if (s.end > s.begin && s.data == nullptr) {
      return InvalidArgumentError("slice of buffer '" + s.buffer + "' has no data");
    }
  }
  return Status::Ok();
}

// Writes this rank's shard file; fills `shard`. Each slice becomes one or more
// segments of at most kMaxSegmentBytes, each with its own checksum.
Status WriteShard(FileSystem* fs, const std::string& path, const std::vector<ShardSlice>& slices,
                  ShardInfo* shard) {
  LS_ASSIGN_OR_RETURN(auto file, fs->NewWritableFile(path));
  int64_t offset = 0;
  for (const ShardSlice& s : slices) {
    if (s.end <= s.begin) continue;
    const char* data = static_cast<const char*>(s.data);
    for (int64_t e = s.begin; e < s.end;) {
      const int64_t count = std::min<int64_t>(s.end - e, kMaxSegmentBytes / 4);
      const char* p = data + (e - s.begin) * 4;
      shard->segments.push_back(
          {s.buffer, offset, count * 4, e, XXH64(p, static_cast<size_t>(count) * 4, 0)});
      offset += count * 4;
      e += count;
    }
    // One write per slice: large writes keep the disk at its sequential bandwidth.
    LS_RETURN_IF_ERROR(file->Append(data, static_cast<size_t>(s.end - s.begin) * 4));
  }
  LS_RETURN_IF_ERROR(file->Sync());
  LS_RETURN_IF_ERROR(file->Close());
  shard->size = offset;
  return Status::Ok();
}

Status PrepareTempDir(FileSystem* fs, const std::string& run_dir, const std::string& tmp_dir) {
  // A leftover of an earlier attempt at the same step would mix old shards in.
  LS_RETURN_IF_ERROR(fs->RemoveAll(tmp_dir));
  const bool had_root = fs->Exists(CheckpointsDir(run_dir));
  LS_RETURN_IF_ERROR(fs->CreateDirs(tmp_dir));
  if (!had_root) LS_RETURN_IF_ERROR(fs->SyncDir(run_dir));
  return Status::Ok();
}

// Rank 0, after every shard is durable: manifest, rename, fsync, retention.
Status Commit(const WriterOptions& o, const CheckpointMeta& meta, int world,
              const std::vector<proto::RankReport>& reports, const std::string& tmp_dir,
              const std::string& final_dir) {
  CheckpointMeta m = meta;
  m.world_size = world;
  if (m.wall_time == 0) {
    m.wall_time =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  m.rng_states.clear();
  bool any_rng = false;
  for (const auto& r : reports) any_rng |= !r.rng_state().empty();
  std::vector<ShardInfo> shards;
  for (const auto& r : reports) {
    if (any_rng) m.rng_states.push_back(r.rng_state());
    shards.push_back(ShardFromProto(r.shard()));
  }
  proto::Manifest manifest = ManifestToProto(m, shards);
  Status valid = ValidateManifest(manifest, BaseName(final_dir));
  if (!valid.ok())
    return InvalidArgumentError("the ranks' slices do not form a valid checkpoint: " +
                                valid.message());

  FileSystem* fs = o.fs;
  LS_RETURN_IF_ERROR(
      fs->WriteFileAtomically(JoinPath(tmp_dir, kManifestFileName), manifest.SerializeAsString()));
  LS_RETURN_IF_ERROR(fs->SyncDir(tmp_dir));
  // Re-save of a committed step (e.g. after a resume): move the old one aside only
  // now that the new one is complete, so there is never less than one valid copy
  // for longer than two renames.
  const std::string old_dir = final_dir + ".old.tmp";
  const bool replacing = fs->Exists(final_dir);
  if (replacing) {
    LS_RETURN_IF_ERROR(fs->RemoveAll(old_dir));
    LS_RETURN_IF_ERROR(fs->Rename(final_dir, old_dir));
  }
  Status renamed = fs->Rename(tmp_dir, final_dir);
  if (!renamed.ok()) {
    if (replacing) (void)fs->Rename(old_dir, final_dir);
    return renamed;
  }
  LS_RETURN_IF_ERROR(fs->SyncDir(CheckpointsDir(o.run_dir)));
  if (replacing) {
    Status s = fs->RemoveAll(old_dir);
    if (!s.ok()) {
      LS_LOG(WARNING) << "checkpoint: could not remove " << old_dir << ": " << s.message();
    }
  }
  auto removed = ApplyRetention(o.run_dir, o.retention, fs, meta.step);
  if (!removed.ok()) {
    LS_LOG(WARNING) << "checkpoint retention: " << removed.status().message();
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> SaveCheckpoint(const WriterOptions& o, const CheckpointMeta& meta,
                                   const std::vector<ShardSlice>& slices) {
  static Coordinator* const kLocal = MakeLocalCoordinator().release();
  Coordinator* coord = o.coordinator != nullptr ? o.coordinator : kLocal;
  const int rank = coord->rank(), world = coord->world_size();
  FileSystem* fs = o.fs;
  const std::string final_dir = JoinPath(CheckpointsDir(o.run_dir), StepDirName(meta.step));
  const std::string tmp_dir = final_dir + ".tmp";

  // Phase 0: inputs checked everywhere; rank 0 makes a fresh step-N.tmp/.
  Status local = CheckInputs(meta, slices, world);
  if (local.ok() && rank == 0) local = PrepareTempDir(fs, o.run_dir, tmp_dir);
  LS_ASSIGN_OR_RETURN(auto prepared,
                      Exchange(coord, local.ok() ? proto::RankReport() : ErrorReport(local),
                               o.deadline, "prepare"));
  Status outcome = Combine(prepared, meta.step);

  // Phase 1: every rank writes and fsyncs its shard, then reports its shard record.
  if (outcome.ok()) {
    ShardInfo shard;
    shard.file = ShardFileName(rank, world);
    shard.rank = rank;
    Status written = WriteShard(fs, JoinPath(tmp_dir, shard.file), slices, &shard);
    proto::RankReport report = written.ok() ? proto::RankReport() : ErrorReport(written);
    ShardToProto(shard, report.mutable_shard());
    report.set_step(meta.step);
    if (meta.rng_states.size() == 1) report.set_rng_state(meta.rng_states[0]);
    if (meta.rng_states.size() > 1) report.set_rng_state(meta.rng_states[rank]);
    LS_ASSIGN_OR_RETURN(auto shards, Exchange(coord, report, o.deadline, "shard exchange"));
    outcome = Combine(shards, meta.step);
    for (size_t r = 0; outcome.ok() && r < shards.size(); ++r) {
      if (shards[r].step() != meta.step) {
        outcome =
            InvalidArgumentError("checkpoint not saved: rank " + std::to_string(r) +
                                 " saves step " + std::to_string(shards[r].step()) + ", rank " +
                                 std::to_string(rank) + " step " + std::to_string(meta.step));
      }
    }
    // Phase 2: rank 0 commits (or cleans up) and tells everyone the outcome.
    proto::RankReport verdict;
    if (rank == 0) {
      Status committed =
          outcome.ok() ? Commit(o, meta, world, shards, tmp_dir, final_dir) : outcome;
      if (!committed.ok()) {
        Status cleaned = fs->RemoveAll(tmp_dir);
        if (!cleaned.ok()) {
          LS_LOG(WARNING) << "checkpoint: " << cleaned.message();
        }
        verdict =
            ErrorReport(outcome.ok() ? Status(committed.code(),
                                              "checkpoint of step " + std::to_string(meta.step) +
                                                  " not saved: rank 0: " + committed.message())
                                     : committed);
      }
    }
    LS_ASSIGN_OR_RETURN(auto verdicts, Exchange(coord, verdict, o.deadline, "commit"));
    const proto::RankReport& v = verdicts[0];
    if (v.code() != 0) return Status(static_cast<StatusCode>(v.code()), v.error());
    return final_dir;
  }
  // Phase 0 failed on some rank: nothing was written; rank 0 removes its empty dir.
  if (rank == 0) (void)fs->RemoveAll(tmp_dir);
  return outcome;
}

}  // namespace lockstep::ckpt
