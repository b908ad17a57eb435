#include "checkpoints/coordinator.h"

#include <condition_variable>
#include <mutex>

#include "common/check.h"

namespace lockstep::ckpt {
namespace {

class LocalCoordinator : public Coordinator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  Result<std::vector<std::string>> AllGather(const std::string& bytes,
                                             std::chrono::milliseconds) override {
    return std::vector<std::string>{bytes};
  }
};

// A reusable gather barrier: ranks deposit into slots; the last to arrive publishes
// the slots as the round's result and bumps the generation, waking the others. A
// round's result cannot be overwritten before every rank has copied it, because the
// next round needs every rank to arrive again.
struct Group {
  explicit Group(int n) : size(n), slots(n) {}
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool broken = false;
  std::vector<std::string> slots;
  std::vector<std::string> result;
};

class ThreadCoordinator : public Coordinator {
 public:
  ThreadCoordinator(std::shared_ptr<Group> group, int rank)
      : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return group_->size; }

  Result<std::vector<std::string>> AllGather(const std::string& bytes,
                                             std::chrono::milliseconds deadline) override {
    Group& g = *group_;
    std::unique_lock<std::mutex> lock(g.mu);
    if (g.broken)
      return AbortedError("checkpoint coordinator group is broken by an earlier time-out");
    g.slots[rank_] = bytes;
    const uint64_t my_generation = g.generation;
    if (++g.arrived == g.size) {
      g.result = g.slots;
      g.arrived = 0;
      ++g.generation;
      g.cv.notify_all();
      return g.result;
    }
    bool done =
        g.cv.wait_for(lock, deadline, [&] { return g.generation != my_generation || g.broken; });
    if (g.generation != my_generation) return g.result;
    if (!done) {
      g.broken = true;
      g.cv.notify_all();
      return DeadlineExceededError("checkpoint all-gather: rank " + std::to_string(rank_) +
                                   " waited " + std::to_string(deadline.count()) + " ms; " +
                                   std::to_string(g.size - g.arrived) + " rank(s) did not arrive");
    }
    return AbortedError("checkpoint all-gather aborted: another rank timed out");
  }

 private:
  std::shared_ptr<Group> group_;
  int rank_;
};

}  // namespace

std::unique_ptr<Coordinator> MakeLocalCoordinator() { return std::make_unique<LocalCoordinator>(); }

std::vector<std::unique_ptr<Coordinator>> MakeThreadCoordinators(int n) {
  LS_CHECK_GE(n, 1);
  auto group = std::make_shared<Group>(n);
  std::vector<std::unique_ptr<Coordinator>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<ThreadCoordinator>(group, r));
  return out;
}

}  // namespace lockstep::ckpt
