// Test helpers for runtime/data: a scratch directory per test and writers of
// crafted IDX files (plain or gzip through zlib). Test-only; single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lockstep {
namespace data {
namespace testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// IDX header (00 00 type rank, then big-endian uint32 dims) followed by payload.
std::vector<uint8_t> IdxBytes(uint8_t type, const std::vector<uint32_t>& dims,
                              const std::vector<uint8_t>& payload);
// An unsigned-byte IDX file whose payload is exactly product(dims) bytes of a pattern.
std::vector<uint8_t> PatternPayload(size_t n, uint32_t salt = 0);

void WritePlain(const std::string& path, const std::vector<uint8_t>& bytes);
void WriteGzip(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> ReadAll(const std::string& path);

}  // namespace testing
}  // namespace data
}  // namespace lockstep
