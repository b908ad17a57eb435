#include "checkpoints/reader.h"

#define XXH_STATIC_LINKING_ONLY  // XXH64_state_t on the stack
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "checkpoints/manifest.h"

namespace lockstep::ckpt {
namespace {

// Reads in pieces this large when checksumming without a destination buffer.
constexpr int64_t kVerifyChunkBytes = int64_t{8} << 20;

std::string Hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Result<proto::Manifest> ReadManifest(const std::string& dir, FileSystem* fs) {
  const std::string path = JoinPath(dir, kManifestFileName);
  if (!fs->Exists(path))
    return NotFoundError(dir + " is not a checkpoint: it has no " + kManifestFileName);
  LS_ASSIGN_OR_RETURN(std::string bytes, fs->ReadFileToString(path));
  auto m = ParseManifest(bytes, BaseName(dir));
  if (!m.ok()) return m.status().WithContext(path);
  return m;
}

Result<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(const std::string& dir,
                                                                 FileSystem* fs) {
  LS_ASSIGN_OR_RETURN(proto::Manifest m, ReadManifest(dir, fs));
  std::unique_ptr<CheckpointReader> r(new CheckpointReader());
  r->dir_ = dir;
  r->meta_ = MetaFromProto(m);
  r->shards_ = ShardsFromProto(m);
  for (size_t i = 0; i < r->shards_.size(); ++i) {
    const ShardInfo& s = r->shards_[i];
    const std::string path = JoinPath(dir, s.file);
    auto size = fs->FileSize(path);
    if (!size.ok())
      return DataLossError("shard " + s.file + " of " + dir +
                           " is missing: " + size.status().message());
    if (*size != s.size) {
      return DataLossError(
          "shard " + s.file + " of " + dir + " is " + std::to_string(*size) +
          " bytes, the manifest says " + std::to_string(s.size) +
          (*size < s.size ? " (truncated at byte offset " + std::to_string(*size) + ")" : ""));
    }
    LS_ASSIGN_OR_RETURN(auto file, fs->NewRandomAccessFile(path));
    r->files_.push_back(std::move(file));
    for (const SegmentInfo& g : s.segments) {
      r->segments_[g.buffer].push_back({g.element_offset, g.length / 4, static_cast<int>(i), &g});
    }
  }
  for (auto& [name, segs] : r->segments_) {
    std::sort(segs.begin(), segs.end(),
              [](const SegmentRef& a, const SegmentRef& b) { return a.begin < b.begin; });
  }
  return r;
}

int64_t CheckpointReader::total_bytes() const {
  int64_t total = 0;
  for (const ShardInfo& s : shards_) total += s.size;
  return total;
}

const BufferLayout* CheckpointReader::FindBuffer(const std::string& name) const {
  for (const BufferLayout& b : meta_.buffers) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

std::string CheckpointReader::Describe(const SegmentRef& seg) const {
  return JoinPath(dir_, shards_[seg.shard].file) + " at byte offset " +
         std::to_string(seg.info->file_offset) + " (segment of " +
         std::to_string(seg.info->length) + " bytes: buffer '" + seg.info->buffer + "' elements [" +
         std::to_string(seg.begin) + ", " + std::to_string(seg.begin + seg.count) + "))";
}

// Reads the whole segment (directly into out when the caller wants all of it),
// checks its checksum, and copies elements [from, to) of the buffer to out.
Status CheckpointReader::ReadSegment(const SegmentRef& seg, int64_t from, int64_t to,
                                     char* out) const {
  const RandomAccessFile& file = *files_[seg.shard];
  const size_t bytes = static_cast<size_t>(seg.count) * 4;
  std::vector<char> scratch;
  char* dst = out;
  if (from != seg.begin || to != seg.begin + seg.count) {
    scratch.resize(bytes);
    dst = scratch.data();
  }
  Status read = file.Read(seg.info->file_offset, bytes, dst);
  if (!read.ok()) return DataLossError("cannot read " + Describe(seg) + ": " + read.message());
  const uint64_t got = XXH64(dst, bytes, 0);
  if (got != seg.info->xxh64) {
    return DataLossError("checksum mismatch in " + Describe(seg) + ": expected " +
                         Hex(seg.info->xxh64) + ", got " + Hex(got));
  }
  if (dst != out)
    std::memcpy(out, dst + (from - seg.begin) * 4, static_cast<size_t>(to - from) * 4);
  return Status::Ok();
}

Status CheckpointReader::Read(const std::string& buffer, int64_t begin, int64_t end,
                              void* out) const {
  const BufferLayout* b = FindBuffer(buffer);
  if (b == nullptr)
    return InvalidArgumentError("checkpoint " + dir_ + " has no buffer '" + buffer + "'");
  if (begin < 0 || begin > end || end > b->elements) {
    return InvalidArgumentError("range [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") outside buffer '" + buffer + "' of " +
                                std::to_string(b->elements) + " elements in " + dir_);
  }
  if (begin == end) return Status::Ok();
  const std::vector<SegmentRef>& segs = segments_.at(buffer);
  // First segment ending after `begin`; validation guarantees the tiling.
  auto it = std::upper_bound(segs.begin(), segs.end(), begin,
                             [](int64_t e, const SegmentRef& s) { return e < s.begin + s.count; });
  char* dst = static_cast<char*>(out);
  while (it != segs.end() && it->begin < end) {
    // A run of wholly requested segments adjacent in one shard file (the usual
    // case: one rank's slice) is read with one pread straight into `out`, then
    // checksummed in place; large reads keep the disk at its sequential bandwidth.
    auto last = it;
    while (it->begin >= begin && last->begin + last->count <= end) {
      auto next = std::next(last);
      if (next == segs.end() || next->shard != it->shard || next->begin + next->count > end ||
          next->begin != last->begin + last->count ||
          next->info->file_offset != last->info->file_offset + last->info->length) {
        break;
      }
      last = next;
    }
    if (last != it) {
      LS_RETURN_IF_ERROR(ReadRun(it, last, dst + (it->begin - begin) * 4));
      it = std::next(last);
      continue;
    }
    const int64_t from = std::max(begin, it->begin), to = std::min(end, it->begin + it->count);
    LS_RETURN_IF_ERROR(ReadSegment(*it, from, to, dst + (from - begin) * 4));
    ++it;
  }
  return Status::Ok();
}

Status CheckpointReader::ReadRun(std::vector<SegmentRef>::const_iterator first,
                                 std::vector<SegmentRef>::const_iterator last, char* out) const {
  const int64_t bytes = last->info->file_offset + last->info->length - first->info->file_offset;
  Status read =
      files_[first->shard]->Read(first->info->file_offset, static_cast<size_t>(bytes), out);
  if (!read.ok())
    return DataLossError("cannot read " + Describe(*first) + " and on: " + read.message());
  for (auto it = first;; ++it) {
    const uint64_t got =
        XXH64(out + (it->info->file_offset - first->info->file_offset), it->info->length, 0);
    if (got != it->info->xxh64) {
      return DataLossError("checksum mismatch in " + Describe(*it) + ": expected " +
                           Hex(it->info->xxh64) + ", got " + Hex(got));
    }
    if (it == last) break;
  }
  return Status::Ok();
}

Status CheckpointReader::ReadTensor(const std::string& buffer, const std::string& tensor,
                                    std::vector<float>* out) const {
  const BufferLayout* b = FindBuffer(buffer);
  if (b == nullptr)
    return InvalidArgumentError("checkpoint " + dir_ + " has no buffer '" + buffer + "'");
  for (const TensorInfo& t : b->tensors) {
    if (t.name != tensor) continue;
    int64_t count = 1;
    for (int64_t d : t.shape) count *= d;
    out->resize(static_cast<size_t>(count));
    return Read(buffer, t.offset, t.offset + count, out->data());
  }
  return InvalidArgumentError("buffer '" + buffer + "' of " + dir_ + " has no tensor '" + tensor +
                              "'");
}

Status CheckpointReader::VerifyAll() const {
  std::vector<char> chunk;
  // Shard by shard in file order: sequential reads.
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (const SegmentInfo& g : shards_[i].segments) {
      const SegmentRef seg{g.element_offset, g.length / 4, static_cast<int>(i), &g};
      XXH64_state_t state;
      XXH64_reset(&state, 0);
      for (int64_t done = 0; done < g.length;) {
        const int64_t n = std::min(kVerifyChunkBytes, g.length - done);
        chunk.resize(static_cast<size_t>(n));
        files_[i]->Prefetch(g.file_offset + done + n, kVerifyChunkBytes);  // overlap with hashing
        Status read = files_[i]->Read(g.file_offset + done, chunk.size(), chunk.data());
        if (!read.ok())
          return DataLossError("cannot read " + Describe(seg) + ": " + read.message());
        XXH64_update(&state, chunk.data(), chunk.size());
        done += n;
      }
      const uint64_t got = XXH64_digest(&state);
      if (got != g.xxh64) {
        return DataLossError("checksum mismatch in " + Describe(seg) + ": expected " +
                             Hex(g.xxh64) + ", got " + Hex(got));
      }
    }
  }
  return Status::Ok();
}

}  // namespace lockstep::ckpt
