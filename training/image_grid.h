// Sample grids for generative models: tiles images into one picture and writes it
// as an 8-bit grayscale PNG (zlib does the compression and the chunk CRCs), so a
// user can open every epoch's samples in any viewer. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep {

struct GrayImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, 0 = black
};

// Tiles `count` single-channel images of height x width (row-major floats, value
// `lo` -> black, `hi` -> white, clamped) into a grid `columns` wide with a 2-pixel
// grey border around every image.
GrayImage TileImages(const float* images, int64_t count, int64_t height, int64_t width, int64_t columns, float lo,
                     float hi);

// Writes `image` to `path` as a PNG via a temporary file and a rename, so a reader
// never sees half a file.
Status WritePng(const std::string& path, const GrayImage& image);

}  // namespace lockstep
