// CheckpointReader: opens a committed checkpoint (manifest parsed and validated,
// every shard present with its recorded size) and reads any element range of any
// buffer from whichever shards hold it, so a checkpoint saved by N ranks restores
// onto M. Every segment a read touches is checksummed first. After Open, all const
// methods are thread-safe (reads use pread).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoints/file_system.h"
#include "checkpoints/proto/checkpoint.pb.h"
#include "checkpoints/types.h"
#include "common/status.h"

namespace lockstep::ckpt {

// Reads DIR/manifest.pb, parses and validates it (including that DIR's name is the
// step's). NotFound when there is no manifest, DataLoss when it is corrupt.
Result<proto::Manifest> ReadManifest(const std::string& dir, FileSystem* fs = PosixFileSystem());

class CheckpointReader {
 public:
  static Result<std::unique_ptr<CheckpointReader>> Open(const std::string& dir,
                                                        FileSystem* fs = PosixFileSystem());

  const CheckpointMeta& meta() const { return meta_; }
  const std::vector<ShardInfo>& shards() const { return shards_; }
  const std::string& dir() const { return dir_; }
  int64_t total_bytes() const;  // sum of the shard sizes
  // nullptr when the checkpoint has no such buffer.
  const BufferLayout* FindBuffer(const std::string& name) const;

  // Reads elements [begin, end) of `buffer` (f32) into out. InvalidArgument for an
  // unknown buffer or a range outside it; DataLoss naming the shard file and byte
  // offset when a touched segment's checksum is wrong.
  Status Read(const std::string& buffer, int64_t begin, int64_t end, void* out) const;
  // Reads one tensor of a buffer entirely.
  Status ReadTensor(const std::string& buffer, const std::string& tensor,
                    std::vector<float>* out) const;
  // Checksums every segment of every shard (what VerifyCheckpoint does after Open).
  Status VerifyAll() const;

 private:
  struct SegmentRef {
    int64_t begin = 0;  // elements
    int64_t count = 0;
    int shard = 0;  // index into shards_ / files_
    const SegmentInfo* info = nullptr;
  };
  CheckpointReader() = default;
  Status ReadSegment(const SegmentRef& seg, int64_t from, int64_t to, char* out) const;
  // Reads segments first..last (adjacent in one file, all wholly wanted) into out.
  Status ReadRun(std::vector<SegmentRef>::const_iterator first,
                 std::vector<SegmentRef>::const_iterator last, char* out) const;
  std::string Describe(const SegmentRef& seg) const;

  std::string dir_;
  CheckpointMeta meta_;
  std::vector<ShardInfo> shards_;
  std::vector<std::unique_ptr<RandomAccessFile>> files_;
  std::map<std::string, std::vector<SegmentRef>> segments_;  // per buffer, by begin
};

}  // namespace lockstep::ckpt
