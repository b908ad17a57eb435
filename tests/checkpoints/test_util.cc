#include "tests/checkpoints/test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace lockstep::ckpt::testing {

ScopedTempDir::ScopedTempDir() {
  std::string tmpl = ::testing::TempDir() + "lockstep-ckpt-XXXXXX";
  char* p = ::mkdtemp(tmpl.data());
  EXPECT_NE(p, nullptr) << "mkdtemp " << tmpl;
  path_ = tmpl;
}

ScopedTempDir::~ScopedTempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<float> MakeValues(int64_t n, float salt) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 4096) * 0.25f + salt;
  return v;
}

CheckpointMeta MakeMeta(int64_t step, int64_t params_elements) {
  CheckpointMeta m;
  m.step = step;
  m.epoch = step / 10;
  m.sample_position = step * 32;
  m.recipe_text = "name: \"test\"\n";
  m.recipe_hash = 0x1234abcd;
  m.architecture = "Dense(3->4)\nReLU\nDense(4->5)\n";
  m.architecture_fingerprint = 0xfeedbeef;
  BufferLayout params{"params",
                      params_elements,
                      "f32",
                      {{"w1", {3, 4}, 0}, {"b1", {4}, 12}, {"w2", {4, 5}, 16}, {"b2", {5}, 36}}};
  m.buffers = {
      params, {"opt.m", params_elements, "f32", {}}, {"opt.v", params_elements, "f32", {}}};
  m.optimizer_kind = "adam";
  m.hyperparameters = {{"lr", 0.001}, {"beta1", 0.9}};
  m.schedule_state = {{"lr", 0.0005}, {"optimizer_steps", static_cast<double>(step)}};
  m.extras = {{"vocab", std::string("a\0b", 3)}};
  return m;
}

TestState MakeState(int64_t step, int64_t params_elements, float salt) {
  TestState s;
  s.meta = MakeMeta(step, params_elements);
  float k = salt;
  for (const BufferLayout& b : s.meta.buffers)
    s.buffers[b.name] = MakeValues(b.elements, k += 1000);
  return s;
}

std::vector<ShardSlice> EvenSlices(const TestState& s, int world, int rank) {
  std::vector<ShardSlice> slices;
  for (const BufferLayout& b : s.meta.buffers) {
    auto [begin, end] = EvenSplit(b.elements, world, rank);
    slices.push_back({b.name, begin, end, s.buffers.at(b.name).data() + begin});
  }
  return slices;
}

std::vector<RankOutcome> SaveOnRanks(const std::string& run_dir, const TestState& s, int world,
                                     RetentionPolicy retention,
                                     const std::function<FileSystem*(int)>& fs_for_rank,
                                     const std::function<void(int, std::vector<ShardSlice>*)>& edit_slices) {
  auto coords = MakeThreadCoordinators(world);
  std::vector<RankOutcome> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      WriterOptions o;
      o.run_dir = run_dir;
      o.coordinator = coords[r].get();
      o.retention = retention;
      o.deadline = std::chrono::milliseconds(20000);
      if (fs_for_rank) o.fs = fs_for_rank(r);
      CheckpointMeta meta = s.meta;
      meta.rng_states = {"rng-of-rank-" + std::to_string(r)};
      std::vector<ShardSlice> slices = EvenSlices(s, world, r);
      if (edit_slices) edit_slices(r, &slices);
      auto saved = SaveCheckpoint(o, meta, slices);
      if (saved.ok())
        out[r].path = *saved;
      else
        out[r].status = saved.status();
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void FlipByte(const std::string& path, int64_t offset) {
  std::string bytes = ReadAll(path);
  ASSERT_LT(offset, static_cast<int64_t>(bytes.size()));
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  WriteAll(path, bytes);
}

}  // namespace lockstep::ckpt::testing
