#include "launcher/silent_hosts.h"

#include <algorithm>
#include <cstdio>
#include <map>

namespace lockstep {

std::vector<SilentHost> FindSilentHosts(const std::vector<RankState>& ranks, double now, double quiet) {
  std::map<std::string, int> per_host;  // ranks of the attempt on each host
  std::map<std::string, SilentHost> silent;
  for (const auto& r : ranks) {
    if (r.rank < 0) continue;
    ++per_host[r.host];
    if (!r.connected || r.said_bye || now - r.last_heartbeat <= quiet) continue;
    SilentHost& h = silent[r.host];
    const double quiet_for = now - r.last_heartbeat;
    h.silent_seconds = h.ranks.empty() ? quiet_for : std::min(h.silent_seconds, quiet_for);
    h.host = r.host;
    h.ranks.push_back(r.rank);
  }
  std::vector<SilentHost> out;
  for (auto& [host, h] : silent) {
    std::sort(h.ranks.begin(), h.ranks.end());
    h.whole_host = static_cast<int>(h.ranks.size()) == per_host[host];
    out.push_back(h);
  }
  std::stable_sort(out.begin(), out.end(), [](const SilentHost& a, const SilentHost& b) {
    if (a.whole_host != b.whole_host) return a.whole_host;
    return a.silent_seconds > b.silent_seconds;
  });
  return out;
}

std::string DescribeSilentHost(const SilentHost& h) {
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.1f", h.silent_seconds);
  std::string list;
  for (size_t i = 0; i < h.ranks.size(); ++i) list += (i ? ", " : "") + std::to_string(h.ranks[i]);
  if (h.whole_host) return "every rank on " + h.host + " (" + list + ") silent for " + secs + " s";
  return std::string(h.ranks.size() == 1 ? "rank " : "ranks ") + list + " on " + h.host + " silent for " + secs + " s";
}

}  // namespace lockstep
