// Reader for IDX files (the MNIST family's format), plain or gzip-compressed.
// Returns an owned copy of the array; no state is kept between calls, so any
// thread may call it concurrently (on different or the same files).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep {
namespace data {

// IDX type code of the only element type we accept (the MNIST files use it).
constexpr uint8_t kIdxUnsignedByte = 0x08;

struct IdxArray {
  uint8_t element_type = 0;    // IDX type code (always kIdxUnsignedByte today)
  std::vector<int64_t> dims;   // 1..4 dimensions, each > 0, outermost first
  std::vector<uint8_t> bytes;  // product(dims) elements, row-major
};

// Reads `path`. Gzip is detected by the magic bytes 1f 8b, not the extension.
// Errors: NotFound (missing), IoError (unreadable), InvalidArgument (header
// names an unsupported type), DataLoss (bad magic, truncated header or
// payload, trailing bytes, corrupt gzip stream). Messages name the path.
Result<IdxArray> ReadIdxFile(const std::string& path);

}  // namespace data
}  // namespace lockstep
