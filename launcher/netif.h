// This host's IPv4 addresses and the choice of the one on a named network, for the
// control plane's advertised address (the network of mpi.if_include, which a
// multi-node config names because host names may resolve elsewhere). Pure functions
// plus one getifaddrs() call; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace lockstep {

struct NetInterface {
  std::string name;  // "eth0"
  std::string ipv4;  // "10.0.0.5"
};

// The up IPv4 interfaces of this host (loopback included).
std::vector<NetInterface> LocalInterfaces();
// The first address that matches `spec` as OpenMPI's btl_tcp_if_include reads it:
// comma-separated CIDR blocks ("10.77.0.0/24") or interface names ("eth0"); "" if none.
std::string PickAddress(const std::vector<NetInterface>& interfaces, const std::string& spec);

}  // namespace lockstep
