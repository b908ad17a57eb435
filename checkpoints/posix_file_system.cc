// The POSIX FileSystem and the path helpers shared by every FileSystem.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "checkpoints/file_system.h"

namespace lockstep::ckpt {
namespace {

Status ErrnoError(const std::string& what, const std::string& path, int err) {
  std::string msg = std::string(std::strerror(err)) + " " + what + " " + path;
  if (err == ENOENT) return NotFoundError(msg);
  return IoError(msg);
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("writing", path_, errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (::fsync(fd_) != 0) return ErrnoError("syncing", path_, errno);
    return Status::Ok();
  }

  Status Close() override {
    if (fd_ < 0) return Status::Ok();
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return ErrnoError("closing", path_, errno);
    return Status::Ok();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  Status Read(int64_t offset, size_t n, void* out) const override {
    char* p = static_cast<char*>(out);
    while (n > 0) {
      ssize_t r = ::pread(fd_, p, n, offset);
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("reading", path_, errno);
      }
      if (r == 0) {
        return DataLossError("unexpected end of file reading " + path_ + " at byte offset " +
                             std::to_string(offset));
      }
      p += r;
      n -= static_cast<size_t>(r);
      offset += r;
    }
    return Status::Ok();
  }

  void Prefetch(int64_t offset, int64_t n) const override {
    (void)::posix_fadvise(fd_, offset, n, POSIX_FADV_WILLNEED);
  }

 private:
  std::string path_;
  int fd_;
};

class PosixFs : public FileSystem {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("creating", path, errno);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("opening", path, errno);
    return std::unique_ptr<RandomAccessFile>(new PosixRandomAccessFile(path, fd));
  }

  Status CreateDirs(const std::string& path) override {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return IoError(ec.message() + " creating directory " + path);
    return Status::Ok();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoError("renaming", from + " to " + to, errno);
    }
    return Status::Ok();
  }

  Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return IoError(ec.message() + " removing " + path);
    return Status::Ok();
  }

  Status SyncDir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("opening directory", path, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoError("syncing directory", path, err);
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return ErrnoError("listing", path, errno);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  Result<int64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoError("inspecting", path, errno);
    return static_cast<int64_t>(st.st_size);
  }

  bool Exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  bool IsDirectory(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }
};

}  // namespace

Result<std::string> FileSystem::ReadFileToString(const std::string& path) {
  LS_ASSIGN_OR_RETURN(int64_t size, FileSize(path));
  LS_ASSIGN_OR_RETURN(auto file, NewRandomAccessFile(path));
  std::string contents(static_cast<size_t>(size), '\0');
  LS_RETURN_IF_ERROR(file->Read(0, contents.size(), contents.data()));
  return contents;
}

Status FileSystem::WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  LS_ASSIGN_OR_RETURN(auto file, NewWritableFile(tmp));
  LS_RETURN_IF_ERROR(file->Append(contents.data(), contents.size()));
  LS_RETURN_IF_ERROR(file->Sync());
  LS_RETURN_IF_ERROR(file->Close());
  return Rename(tmp, path);
}

FileSystem* PosixFileSystem() {
  static PosixFs* fs = new PosixFs();
  return fs;
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::string BaseName(const std::string& path) {
  size_t end = path.find_last_not_of('/');
  if (end == std::string::npos) return path.empty() ? "" : "/";
  size_t start = path.find_last_of('/', end);
  return path.substr(start == std::string::npos ? 0 : start + 1,
                     start == std::string::npos ? end + 1 : end - start);
}

}  // namespace lockstep::ckpt
