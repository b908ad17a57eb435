// Plain value types of the checkpoint library: buffer layouts, the slices a rank
// saves, the manifest's metadata and the shard table. The library knows nothing of
// tensors or models: a checkpoint is named fp32 flat buffers plus this metadata.
// Value types; thread-compatible.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lockstep::ckpt {

// A named view into a buffer; offset and shape are in elements.
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;
};

// One flat buffer, e.g. "params", "opt.m", "opt.v", "opt.momentum".
struct BufferLayout {
  std::string name;
  int64_t elements = 0;
  std::string dtype = "f32";  // the only dtype of format 1
  std::vector<TensorInfo> tensors;
};

// This rank's element range [begin, end) of a buffer; data points at element
// `begin` and must stay valid for the duration of the call it is passed to.
struct ShardSlice {
  std::string buffer;
  int64_t begin = 0;
  int64_t end = 0;
  const void* data = nullptr;
};

// Everything in the manifest except the shard table.
struct CheckpointMeta {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t sample_position = 0;
  // Informational on input: SaveCheckpoint records the coordinator's world size.
  int world_size = 1;
  std::string recipe_text;
  uint64_t recipe_hash = 0;
  std::string architecture;  // human-readable model summary, one layer per line
  uint64_t architecture_fingerprint = 0;
  std::vector<BufferLayout> buffers;
  std::string optimizer_kind;
  std::map<std::string, double> hyperparameters;
  std::map<std::string, double> schedule_state;  // e.g. lr, optimizer steps taken
  // Index = rank. On save each rank may pass either only its own state (size 1) or
  // all of them (size world); the writer gathers one per rank either way.
  std::vector<std::string> rng_states;
  std::map<std::string, std::string> extras;  // opaque named blobs (e.g. a vocabulary)
  double wall_time = 0;  // Unix seconds when the state was captured; 0 = "now" on save
  std::string lockstep_version = LOCKSTEP_VERSION;
  int format_version = 1;
};

// A contiguous run of a buffer's elements inside a shard file, with its checksum.
struct SegmentInfo {
  std::string buffer;
  int64_t file_offset = 0;     // bytes
  int64_t length = 0;          // bytes
  int64_t element_offset = 0;  // global index of the first element
  uint64_t xxh64 = 0;
};

struct ShardInfo {
  std::string file;  // plain name inside the checkpoint directory
  int rank = 0;
  int64_t size = 0;  // bytes
  std::vector<SegmentInfo> segments;
};

// A committed checkpoint directory found under RUN_DIR/checkpoints.
struct CheckpointEntry {
  std::string path;
  int64_t step = 0;
};

// Keep the newest `keep_last` checkpoints (<= 0: keep all), plus forever every
// checkpoint whose step is a multiple of keep_every_steps (when > 0).
struct RetentionPolicy {
  int keep_last = 3;
  int64_t keep_every_steps = 0;
};

// The even split used by tests and tools: part `index` of `parts` of [0, elements),
// the first (elements % parts) parts one element longer. Returns [begin, end).
std::pair<int64_t, int64_t> EvenSplit(int64_t elements, int parts, int index);

// Directory and file names of the format.
std::string CheckpointsDir(const std::string& run_dir);  // RUN_DIR/checkpoints
std::string StepDirName(int64_t step);                   // step-00000042
std::string ShardFileName(int rank, int world_size);     // shard-00001-of-00004.bin
inline constexpr char kManifestFileName[] = "manifest.pb";
inline constexpr int kFormatVersion = 1;
inline constexpr int kMaxWorldSize = 99999;  // shard names have five digits

}  // namespace lockstep::ckpt
