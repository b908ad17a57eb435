// Helpers of the tests that run `lockstep train` and read the checkpoints it wrote
// (tests/resume, tests/cuda_emulator): the command, fresh run directories, step
// directories and checkpoint buffers. Test-only, header-only; needs
// LOCKSTEP_TEST_SOURCE_DIR.
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

// A recipe of tests/ddp (the small models of the equivalence and resume tests).
inline std::string DdpRecipe(const std::string& name) {
  return std::string(LOCKSTEP_TEST_SOURCE_DIR) + "/tests/ddp/" + name;
}

// `binary train` (a lockstep build) of tests/ddp/`recipe` on `ranks` ranks (1: no
// mpirun) in `run_dir`, quiet, output and errors together: a shell command.
inline std::string TrainCommand(const std::string& binary, int ranks, const std::string& recipe,
                                const std::string& run_dir, const std::string& args) {
  return (ranks > 1 ? Mpirun(ranks) : std::string()) + binary + " train --quiet --config " + DdpRecipe(recipe) +
         " --run-dir " + run_dir + " " + args + " 2>&1";
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
