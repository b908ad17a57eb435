// The thread coordinators used by the multi-rank tests: gathers in rank order,
// reusable round after round, and a time-out breaks the group.
#include "checkpoints/coordinator.h"

#include <gtest/gtest.h>

#include <thread>

namespace lockstep::ckpt {
namespace {

TEST(ThreadCoordinators, GatherInRankOrderManyRounds) {
  auto coords = MakeThreadCoordinators(4);
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int r = 0; r < 4; ++r) {
    threads.emplace_back([&, r] {
      for (int round = 0; round < 200; ++round) {
        auto got = coords[r]->AllGather(std::to_string(round * 10 + r), std::chrono::seconds(10));
        if (!got.ok() || got->size() != 4) {
          ++bad[r];
          continue;
        }
        for (int k = 0; k < 4; ++k) bad[r] += (*got)[k] != std::to_string(round * 10 + k);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, (std::vector<int>{0, 0, 0, 0}));
}

TEST(ThreadCoordinators, TimeoutBreaksTheGroup) {
  auto coords = MakeThreadCoordinators(2);
  auto got = coords[0]->AllGather("x", std::chrono::milliseconds(50));
  EXPECT_EQ(got.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(coords[1]->AllGather("y", std::chrono::milliseconds(50)).status().code(),
            StatusCode::kAborted);
}

TEST(LocalCoordinator, IsWorldOne) {
  auto c = MakeLocalCoordinator();
  EXPECT_EQ(c->world_size(), 1);
  auto got = c->AllGather("abc", std::chrono::milliseconds(1));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, std::vector<std::string>{"abc"});
}

}  // namespace
}  // namespace lockstep::ckpt
