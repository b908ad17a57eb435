// Helpers of the tests that run `lockstep train` and read the checkpoints it wrote
// (tests/resume, tests/cuda_emulator): fresh run directories, step directories and
// checkpoint buffers. Test-only, header-only.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "tests/ddp/subprocess.h"

namespace lockstep::testing {

inline bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

inline bool HaveDataset() { return Exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); }

// A fresh run directory per test and process (ctest runs tests in parallel).
inline std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/" + name + "_" + std::to_string(getpid());
  RunCommand("rm -rf '" + dir + "'", 30);
  return dir;
}

inline std::string StepDir(const std::string& run, int64_t step) {
  return run + "/checkpoints/" + ckpt::StepDirName(step);
}

// One buffer of the checkpoint in `dir`, whole; empty (and a test failure) if absent.
inline std::vector<float> ReadBuffer(const std::string& dir, const std::string& buffer) {
  auto reader = ckpt::CheckpointReader::Open(dir);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return {};
  const ckpt::BufferLayout* layout = (*reader)->FindBuffer(buffer);
  EXPECT_NE(layout, nullptr) << buffer << " in " << dir;
  if (layout == nullptr) return {};
  std::vector<float> out(static_cast<size_t>(layout->elements));
  Status read = (*reader)->Read(buffer, 0, layout->elements, out.data());
  EXPECT_TRUE(read.ok()) << read.ToString();
  return out;
}

}  // namespace lockstep::testing
