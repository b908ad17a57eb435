// IDX reader: the whole file is read into memory, gunzipped when it starts with
// the gzip magic, then the header is validated against the payload length.
#include "runtime/data/idx_reader.h"

#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

namespace lockstep {
namespace data {
namespace {

Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR)
      return NotFoundError("IDX file " + path + " does not exist");
    return IoError("cannot stat IDX file " + path + ": " + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode))
    return InvalidArgumentError("IDX path " + path + " is a directory, expected a file");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return IoError("cannot open IDX file " + path + ": " + std::strerror(errno));
  out->clear();
  if (st.st_size > 0) out->reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out->insert(out->end(), buf, buf + n);
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) return IoError("read error on IDX file " + path + ": " + std::strerror(err));
  return Status::Ok();
}

bool IsGzip(const std::vector<uint8_t>& raw) {
  return raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
}

// Inflates every gzip member of `raw` (concatenated members are legal gzip).
Status Gunzip(const std::string& path, const std::vector<uint8_t>& raw, std::vector<uint8_t>* out) {
  out->clear();
  out->reserve(raw.size() * 4);
  size_t pos = 0;
  uint8_t buf[1 << 16];
  while (pos < raw.size()) {
    if (raw.size() - pos < 2 || raw[pos] != 0x1f || raw[pos + 1] != 0x8b) {
      return DataLossError("corrupt gzip file " + path + ": " + std::to_string(raw.size() - pos) +
                           " trailing bytes after the gzip stream at compressed offset " +
                           std::to_string(pos));
    }
    z_stream zs;
    std::memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return InternalError("inflateInit2 failed for " + path);
    zs.next_in = const_cast<Bytef*>(raw.data() + pos);
    zs.avail_in =
        static_cast<uInt>(std::min<size_t>(raw.size() - pos, std::numeric_limits<uInt>::max()));
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      zs.next_out = buf;
      zs.avail_out = sizeof(buf);
      rc = inflate(&zs, Z_NO_FLUSH);
      out->insert(out->end(), buf, buf + (sizeof(buf) - zs.avail_out));
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
        size_t consumed = static_cast<size_t>(zs.next_in - raw.data());
        if (consumed >= raw.size()) {
          inflateEnd(&zs);
          return DataLossError("corrupt gzip file " + path +
                               ": the compressed stream ends early (truncated file, " +
                               std::to_string(raw.size()) + " compressed bytes)");
        }
        zs.avail_in = static_cast<uInt>(
            std::min<size_t>(raw.size() - consumed, std::numeric_limits<uInt>::max()));
        continue;
      }
      if (rc != Z_OK) {
        std::string why = zs.msg != nullptr ? zs.msg : ("zlib error " + std::to_string(rc));
        inflateEnd(&zs);
        return DataLossError("corrupt gzip file " + path + ": " + why + " after " +
                             std::to_string(out->size()) + " decompressed bytes");
      }
    }
    pos = static_cast<size_t>(zs.next_in - raw.data());
    inflateEnd(&zs);
  }
  return Status::Ok();
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

Result<IdxArray> ReadIdxFile(const std::string& path) {
  std::vector<uint8_t> raw;
  LS_RETURN_IF_ERROR(ReadWholeFile(path, &raw));
  std::vector<uint8_t> content;
  if (IsGzip(raw)) {
    LS_RETURN_IF_ERROR(Gunzip(path, raw, &content));
    raw.clear();
    raw.shrink_to_fit();
  } else {
    content.swap(raw);
  }

  if (content.size() < 4) {
    return DataLossError("truncated header in IDX file " + path + ": " +
                         std::to_string(content.size()) + " bytes, expected at least 4 (magic)");
  }
  if (content[0] != 0 || content[1] != 0) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%02x %02x", content[0], content[1]);
    return DataLossError("bad magic in IDX file " + path + ": first two bytes are " + hex +
                         ", expected 00 00 (not an IDX file?)");
  }
  const uint8_t type = content[2];
  const int rank = content[3];
  if (rank < 1 || rank > 4) {
    return DataLossError("bad header in IDX file " + path + ": dimension count " +
                         std::to_string(rank) + ", expected 1..4");
  }
  if (type != kIdxUnsignedByte) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", type);
    return InvalidArgumentError("unsupported element type " + std::string(hex) + " in IDX file " +
                                path + ": only 0x08 (unsigned byte) is supported");
  }
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (content.size() < header) {
    return DataLossError("truncated header in IDX file " + path + ": " +
                         std::to_string(content.size()) + " bytes, expected " +
                         std::to_string(header) + " for " + std::to_string(rank) + " dimensions");
  }
  IdxArray out;
  out.element_type = type;
  // Saturating product: four 32-bit dims can exceed int64; any such file is truncated.
  const uint64_t kHuge = uint64_t{1} << 62;
  uint64_t expected = 1;
  for (int d = 0; d < rank; ++d) {
    uint32_t v = BigEndian32(content.data() + 4 + 4 * d);
    if (v == 0) {
      return DataLossError("bad header in IDX file " + path + ": dimension " + std::to_string(d) +
                           " is 0, expected > 0");
    }
    out.dims.push_back(static_cast<int64_t>(v));
    expected = expected > kHuge / v ? kHuge : expected * v;
  }
  const uint64_t actual = content.size() - header;
  if (actual < expected) {
    return DataLossError("truncated payload in IDX file " + path + ": expected " +
                         std::to_string(expected) + " bytes, got " + std::to_string(actual));
  }
  if (actual > expected) {
    return DataLossError("trailing bytes in IDX file " + path + ": expected " +
                         std::to_string(expected) + " payload bytes, got " +
                         std::to_string(actual) + " (" + std::to_string(actual - expected) +
                         " extra)");
  }
  content.erase(content.begin(), content.begin() + static_cast<std::ptrdiff_t>(header));
  out.bytes = std::move(content);
  return out;
}

}  // namespace data
}  // namespace lockstep
