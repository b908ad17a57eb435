// libFuzzer target: manifest bytes -> parse + validate, then check the promises
// validation makes to readers (plain shard names, segments tiling each buffer,
// segments inside their shard). Built and run by tests/checkpoints/run_manifest_fuzzer.sh.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "checkpoints/manifest.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();  // a manifest that validated but breaks a promise
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep::ckpt;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto parsed = ParseManifest(bytes);
  if (!parsed.ok()) return 0;
  const proto::Manifest& m = *parsed;
  const CheckpointMeta meta = MetaFromProto(m);
  std::map<std::string, int64_t> covered;
  for (const ShardInfo& s : ShardsFromProto(m)) {
    int rank = -1, world = -1;
    Require(ParseShardFileName(s.file, &rank, &world));
    Require(s.file.find('/') == std::string::npos && s.file.find("..") == std::string::npos);
    Require(world == meta.world_size && rank == s.rank);
    for (const SegmentInfo& g : s.segments) {
      Require(g.file_offset >= 0 && g.length > 0 && g.file_offset + g.length <= s.size);
      covered[g.buffer] += g.length / 4;
    }
  }
  for (const BufferLayout& b : meta.buffers) {
    Require(covered[b.name] == b.elements);
    for (const TensorInfo& t : b.tensors) Require(t.offset >= 0 && t.offset <= b.elements);
  }
  // Round trip through the conversions must preserve validity.
  Require(ValidateManifest(ManifestToProto(meta, ShardsFromProto(m)), StepDirName(meta.step)).ok());
  return 0;
}
