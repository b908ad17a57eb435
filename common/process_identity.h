// Who this process is (rank, host): stamped on every log line and every fatal
// error so a failure on rank 13 of 64 says so. Set once at start-up by the
// runtime when the rank is known; readable from any thread.
#pragma once

#include <string>

namespace lockstep {

void SetProcessRank(int rank, int world_size);
int ProcessRank();        // -1 until set
int ProcessWorldSize();   // 1 until set
const std::string& HostName();
// "rank 3/4 on host-a" (or "host-a" before the rank is known).
std::string ProcessDescription();

}  // namespace lockstep
