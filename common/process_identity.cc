#include "common/process_identity.h"

#include <unistd.h>

#include <atomic>

namespace lockstep {
namespace {
std::atomic<int> g_rank{-1};
std::atomic<int> g_world_size{1};
}  // namespace

void SetProcessRank(int rank, int world_size) {
  g_rank.store(rank);
  g_world_size.store(world_size);
}
int ProcessRank() { return g_rank.load(); }
int ProcessWorldSize() { return g_world_size.load(); }

const std::string& HostName() {
  static const std::string host = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return std::string("unknown-host");
    return std::string(buf);
  }();
  return host;
}

std::string ProcessDescription() {
  int rank = ProcessRank();
  if (rank < 0) return HostName();
  return "rank " + std::to_string(rank) + "/" + std::to_string(ProcessWorldSize()) + " on " +
         HostName();
}

}  // namespace lockstep
