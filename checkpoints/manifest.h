// The manifest: conversion between CheckpointMeta + shard table and the protobuf
// message, and the strict validation that every reader applies before trusting a
// manifest (plain shard names, segments tiling each buffer exactly, sizes that add
// up, tensors inside buffers). Pure functions; thread-safe. Also the entry point of
// the manifest fuzzer, so it depends on nothing but protobuf and common.
#pragma once

#include <string>
#include <vector>

#include "checkpoints/proto/checkpoint.pb.h"
#include "checkpoints/types.h"
#include "common/status.h"

namespace lockstep::ckpt {

proto::Manifest ManifestToProto(const CheckpointMeta& meta, const std::vector<ShardInfo>& shards);
CheckpointMeta MetaFromProto(const proto::Manifest& m);
std::vector<ShardInfo> ShardsFromProto(const proto::Manifest& m);
ShardInfo ShardFromProto(const proto::Shard& s);
void ShardToProto(const ShardInfo& s, proto::Shard* out);

// Checks the buffer layouts alone (names, dtype, tensors inside their buffer); used
// by the writer on its input and by ValidateManifest.
Status ValidateLayout(const proto::Manifest& m);
Status ValidateLayout(const CheckpointMeta& meta);

// Every rule of the format (FORMAT.md "Validation"). `dir_name`, when not empty, is
// the checkpoint directory's base name and must be StepDirName(m.step()).
Status ValidateManifest(const proto::Manifest& m, const std::string& dir_name = "");

// Parses and validates manifest bytes; DataLoss on a parse failure (e.g. truncation).
Result<proto::Manifest> ParseManifest(const std::string& bytes, const std::string& dir_name = "");

// "shard-00001-of-00004.bin" -> {1, 4}; false for anything else (paths, "..", ...).
bool ParseShardFileName(const std::string& name, int* rank, int* world_size);
// "step-00000042" -> 42 (at least 8 digits); false for anything else.
bool ParseStepDirName(const std::string& name, int64_t* step);

}  // namespace lockstep::ckpt
