// The fault-injecting FileSystem wrapper configured by a spec string (see
// file_system.h) and its environment-variable factory.
#include <atomic>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "checkpoints/file_system.h"

namespace lockstep::ckpt {
namespace {

struct FaultSpec {
  int64_t enospc_after_bytes = -1;
  int64_t eio_after_bytes = -1;
  bool fail_fsync = false;
  bool fail_rename = false;
  int64_t write_delay_ms = 0;
  int rank = -1;  // -1: every rank
};

Result<int64_t> ParseCount(const std::string& key, const std::string& value) {
  char* end = nullptr;
  long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 0) {
    return InvalidArgumentError("fault spec: " + key + " needs a non-negative integer, got '" +
                                value + "'");
  }
  return static_cast<int64_t>(v);
}

Result<FaultSpec> ParseFaultSpec(const std::string& spec) {
  FaultSpec f;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string key = item.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "fail_fsync" && eq == std::string::npos) {
      f.fail_fsync = true;
    } else if (key == "fail_rename" && eq == std::string::npos) {
      f.fail_rename = true;
    } else if (key == "enospc_after_bytes") {
      LS_ASSIGN_OR_RETURN(f.enospc_after_bytes, ParseCount(key, value));
    } else if (key == "eio_after_bytes") {
      LS_ASSIGN_OR_RETURN(f.eio_after_bytes, ParseCount(key, value));
    } else if (key == "write_delay_ms") {
      LS_ASSIGN_OR_RETURN(f.write_delay_ms, ParseCount(key, value));
    } else if (key == "rank") {
      LS_ASSIGN_OR_RETURN(int64_t r, ParseCount(key, value));
      f.rank = static_cast<int>(r);
    } else {
      return InvalidArgumentError(
          "fault spec: unknown fault '" + item +
          "' (known: enospc_after_bytes=N, eio_after_bytes=N, fail_fsync, fail_rename, "
          "write_delay_ms=N, rank=R)");
    }
  }
  return f;
}

// Shared by the wrapper and the files it opens: bytes appended so far.
struct FaultState {
  FaultSpec spec;
  std::atomic<int64_t> appended{0};
};

class FaultWritableFile : public WritableFile {
 public:
  FaultWritableFile(std::unique_ptr<WritableFile> base, std::string path,
                    std::shared_ptr<FaultState> state)
      : base_(std::move(base)), path_(std::move(path)), state_(std::move(state)) {}

  Status Append(const void* data, size_t n) override {
    const FaultSpec& s = state_->spec;
    if (s.write_delay_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(s.write_delay_ms));
    int64_t before = state_->appended.fetch_add(static_cast<int64_t>(n));
    auto limit_hit = [&](int64_t limit) {
      return limit >= 0 && before + static_cast<int64_t>(n) > limit;
    };
    if (limit_hit(s.enospc_after_bytes) || limit_hit(s.eio_after_bytes)) {
      bool enospc = limit_hit(s.enospc_after_bytes);
      int64_t limit = enospc ? s.enospc_after_bytes : s.eio_after_bytes;
      // Like a real full disk: the bytes that still fit are written.
      size_t fits = before < limit ? static_cast<size_t>(limit - before) : 0;
      if (fits > 0) LS_RETURN_IF_ERROR(base_->Append(data, fits));
      return IoError(std::string(enospc ? "No space left on device" : "Input/output error") +
                     " writing " + path_ + " (injected fault)");
    }
    return base_->Append(data, n);
  }
  Status Sync() override {
    if (state_->spec.fail_fsync)
      return IoError("Input/output error syncing " + path_ + " (injected fault)");
    return base_->Sync();
  }
  Status Close() override { return base_->Close(); }

 private:
  std::unique_ptr<WritableFile> base_;
  std::string path_;
  std::shared_ptr<FaultState> state_;
};

class FaultFs : public FileSystem {
 public:
  FaultFs(FileSystem* base, FaultSpec spec) : base_(base), state_(std::make_shared<FaultState>()) {
    state_->spec = spec;
  }

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    LS_ASSIGN_OR_RETURN(auto file, base_->NewWritableFile(path));
    return std::unique_ptr<WritableFile>(new FaultWritableFile(std::move(file), path, state_));
  }
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return base_->NewRandomAccessFile(path);
  }
  Status CreateDirs(const std::string& path) override { return base_->CreateDirs(path); }
  Status Rename(const std::string& from, const std::string& to) override {
    if (state_->spec.fail_rename) {
      return IoError("Input/output error renaming " + from + " to " + to + " (injected fault)");
    }
    return base_->Rename(from, to);
  }
  Status RemoveAll(const std::string& path) override { return base_->RemoveAll(path); }
  Status SyncDir(const std::string& path) override {
    if (state_->spec.fail_fsync)
      return IoError("Input/output error syncing directory " + path + " (injected fault)");
    return base_->SyncDir(path);
  }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  Result<int64_t> FileSize(const std::string& path) override { return base_->FileSize(path); }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  bool IsDirectory(const std::string& path) override { return base_->IsDirectory(path); }

 private:
  FileSystem* base_;
  std::shared_ptr<FaultState> state_;
};

}  // namespace

Result<std::unique_ptr<FileSystem>> MakeFaultInjectingFileSystem(FileSystem* base,
                                                                 const std::string& spec) {
  LS_ASSIGN_OR_RETURN(FaultSpec f, ParseFaultSpec(spec));
  return std::unique_ptr<FileSystem>(new FaultFs(base, f));
}

Result<std::unique_ptr<FileSystem>> MakeFileSystemFromEnv(int rank) {
  const char* env = std::getenv(kFaultEnvVar);
  std::string spec = env == nullptr ? "" : env;
  auto parsed = ParseFaultSpec(spec);
  if (!parsed.ok()) return parsed.status().WithContext(kFaultEnvVar);
  if (parsed->rank >= 0 && parsed->rank != rank) spec.clear();
  return MakeFaultInjectingFileSystem(PosixFileSystem(), spec);
}

}  // namespace lockstep::ckpt
