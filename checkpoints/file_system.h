// FileSystem: the seam between the checkpoint library and the disk (leveldb's Env
// idea). PosixFileSystem() is the real one; MakeFaultInjectingFileSystem wraps any
// FileSystem to fail or slow chosen operations, for tests of the commit protocol.
// FileSystem objects are thread-safe; a WritableFile / RandomAccessFile is used by
// one thread at a time (RandomAccessFile::Read is pread-based and also thread-safe).
// Every error message names the path and the operating system's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep::ckpt {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(const void* data, size_t n) = 0;
  virtual Status Sync() = 0;   // fsync: data and metadata durable
  virtual Status Close() = 0;  // idempotent; the destructor closes without reporting
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads exactly n bytes at offset; DataLoss when the file ends first.
  virtual Status Read(int64_t offset, size_t n, void* out) const = 0;
  // Hint that [offset, offset + n) will be read soon, so the kernel can fetch it
  // while the caller checksums what it already has. Best effort; default no-op.
  virtual void Prefetch(int64_t offset, int64_t n) const {
    (void)offset;
    (void)n;
  }
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates or truncates.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  // mkdir -p; OK when the directory exists.
  virtual Status CreateDirs(const std::string& path) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // rm -rf; OK when the path does not exist.
  virtual Status RemoveAll(const std::string& path) = 0;
  // fsync of a directory, making renames and creations inside it durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // Names (not paths) of the entries, sorted; NotFound when `path` does not exist.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  virtual Result<int64_t> FileSize(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  virtual bool IsDirectory(const std::string& path) = 0;

  // Convenience built on the above.
  Result<std::string> ReadFileToString(const std::string& path);
  // Writes `path`.tmp, fsyncs, renames to `path`.
  Status WriteFileAtomically(const std::string& path, const std::string& contents);
};

// The process-wide POSIX filesystem (never deleted).
FileSystem* PosixFileSystem();

// Wraps `base` (not owned; must outlive the wrapper). `spec` is a comma-separated
// list of faults, empty for none:
//   enospc_after_bytes=N  appends fail with "No space left on device" once N bytes
//                         in total have been appended through this wrapper
//   eio_after_bytes=N     likewise with "Input/output error"
//   fail_fsync            every Sync/SyncDir fails
//   fail_rename           every Rename fails
//   write_delay_ms=N      every Append first sleeps N ms (lets a test kill -9 mid-save)
//   rank=R                only for MakeFileSystemFromEnv: apply on rank R only
// InvalidArgument on an unknown key or bad number.
Result<std::unique_ptr<FileSystem>> MakeFaultInjectingFileSystem(FileSystem* base,
                                                                 const std::string& spec);

// The filesystem selected by the environment variable LOCKSTEP_CKPT_FAULT (a spec as
// above) for process-level fault tests of the real binary: unset or empty gives a
// pass-through wrapper of PosixFileSystem(). `rank` is this process's rank, matched
// against an optional rank=R in the spec.
Result<std::unique_ptr<FileSystem>> MakeFileSystemFromEnv(int rank);
inline constexpr char kFaultEnvVar[] = "LOCKSTEP_CKPT_FAULT";

// a/b without doubled slashes.
std::string JoinPath(const std::string& a, const std::string& b);
// The last path component ("step-00000010" for ".../step-00000010/").
std::string BaseName(const std::string& path);

}  // namespace lockstep::ckpt
