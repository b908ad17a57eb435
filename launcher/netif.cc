#include "launcher/netif.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstdlib>
#include <sstream>

namespace lockstep {
namespace {

bool ParseIpv4(const std::string& text, uint32_t* out) {
  in_addr a {};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return false;
  *out = ntohl(a.s_addr);
  return true;
}

// "A.B.C.D/N" contains `ip`; false for anything that is not a CIDR block.
bool InCidr(const std::string& cidr, const std::string& ip) {
  size_t slash = cidr.find('/');
  if (slash == std::string::npos) return false;
  uint32_t net = 0, addr = 0;
  if (!ParseIpv4(cidr.substr(0, slash), &net) || !ParseIpv4(ip, &addr)) return false;
  char* end = nullptr;
  long bits = std::strtol(cidr.c_str() + slash + 1, &end, 10);
  if (*end != '\0' || bits < 0 || bits > 32) return false;
  uint32_t mask = bits == 0 ? 0u : ~0u << (32 - bits);
  return (net & mask) == (addr & mask);
}

}  // namespace

std::vector<NetInterface> LocalInterfaces() {
  std::vector<NetInterface> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    char buf[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof(buf));
    out.push_back({i->ifa_name, buf});
  }
  freeifaddrs(list);
  return out;
}

std::string PickAddress(const std::vector<NetInterface>& interfaces, const std::string& spec) {
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    for (const auto& i : interfaces) {
      if (item.find('/') != std::string::npos ? InCidr(item, i.ipv4) : i.name == item) return i.ipv4;
    }
  }
  return "";
}

}  // namespace lockstep
