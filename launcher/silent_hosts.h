// Which hosts went silent on the control plane: the supervisor's evidence that a node
// was lost or cut off (every rank on it connected, no goodbye, no heartbeat), named in
// its failure reports. Pure functions of the ranks' states; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "launcher/control_server.h"

namespace lockstep {

struct SilentHost {
  std::string host;
  std::vector<int> ranks;       // its silent ranks, ascending
  double silent_seconds = 0;    // the shortest silence among them
  bool whole_host = false;      // every rank of the attempt on this host is silent
};

// Ranks still connected, without a goodbye, whose last message is more than `quiet`
// seconds old at `now`, grouped by host: hosts whose every rank is silent first, then
// longer silences first.
std::vector<SilentHost> FindSilentHosts(const std::vector<RankState>& ranks, double now, double quiet);

// "every rank on HOST (2, 3) silent for 8.1 s" or "rank 2 on HOST silent for 8.1 s".
std::string DescribeSilentHost(const SilentHost& h);

}  // namespace lockstep
