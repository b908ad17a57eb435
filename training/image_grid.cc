#include "training/image_grid.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lockstep {
namespace {

constexpr int64_t kBorder = 2;
constexpr uint8_t kBorderGrey = 128;

void PutBigEndian32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

// One PNG chunk: length, type, data, CRC-32 over type and data.
void AppendChunk(std::string* out, const char type[4], const std::string& data) {
  PutBigEndian32(out, static_cast<uint32_t>(data.size()));
  std::string typed(type, 4);
  typed += data;
  out->append(typed);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(typed.data()), static_cast<uInt>(typed.size()));
  PutBigEndian32(out, static_cast<uint32_t>(crc));
}

}  // namespace

GrayImage TileImages(const float* images, int64_t count, int64_t height, int64_t width, int64_t columns, float lo,
                     float hi) {
  GrayImage grid;
  columns = std::max<int64_t>(1, std::min(columns, std::max<int64_t>(count, 1)));
  const int64_t rows = (count + columns - 1) / columns;
  grid.width = columns * (width + kBorder) + kBorder;
  grid.height = rows * (height + kBorder) + kBorder;
  grid.pixels.assign(static_cast<size_t>(grid.width * grid.height), kBorderGrey);
  const float scale = hi > lo ? 255.0f / (hi - lo) : 0.0f;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t top = kBorder + (i / columns) * (height + kBorder);
    const int64_t left = kBorder + (i % columns) * (width + kBorder);
    const float* image = images + i * height * width;
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        float v = (image[y * width + x] - lo) * scale;
        v = std::min(255.0f, std::max(0.0f, v));
        grid.pixels[static_cast<size_t>((top + y) * grid.width + left + x)] = static_cast<uint8_t>(v + 0.5f);
      }
    }
  }
  return grid;
}

Status WritePng(const std::string& path, const GrayImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width * image.height)) {
    return InvalidArgumentError("cannot write " + path + ": the image has no pixels or a wrong size");
  }
  // Filter type 0 (none) before every row.
  std::string raw;
  raw.reserve(static_cast<size_t>((image.width + 1) * image.height));
  for (int64_t y = 0; y < image.height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(image.pixels.data() + y * image.width), static_cast<size_t>(image.width));
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(&packed[0]), &packed_size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION) != Z_OK) {
    return InternalError("cannot compress the image for " + path);
  }
  packed.resize(packed_size);
  std::string header;
  PutBigEndian32(&header, static_cast<uint32_t>(image.width));
  PutBigEndian32(&header, static_cast<uint32_t>(image.height));
  header += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit greyscale, deflate, no filter set, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  AppendChunk(&png, "IHDR", header);
  AppendChunk(&png, "IDAT", packed);
  AppendChunk(&png, "IEND", "");

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return IoError("cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(png.data(), 1, png.size(), f) == png.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return IoError("cannot write " + path + ": " + why);
  }
  return Status::Ok();
}

}  // namespace lockstep
