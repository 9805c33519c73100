#include "net/egress_policy.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>

namespace isobox::net {

const std::vector<Ipv4Cidr>& NeverReachableRanges() {
  static const std::vector<Ipv4Cidr> ranges = [] {
    std::vector<Ipv4Cidr> out;
    for (const char* text : {"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
                             "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16",
                             "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4"}) {
      out.push_back(*ParseCidr(text));
    }
    return out;
  }();
  return ranges;
}

std::vector<uint32_t> HostIpv4Addresses() {
  std::vector<uint32_t> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) < 0) return out;
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    out.push_back(ntohl(reinterpret_cast<sockaddr_in*>(it->ifa_addr)->sin_addr.s_addr));
  }
  ::freeifaddrs(list);
  return out;
}

bool NeverReachable(const ReachLimits& limits, uint32_t address) {
  // SECURITY: the sandboxes' block and loopback stay closed whatever an operator opens:
  // other sandboxes and the host's own services are never a destination.
  if (limits.sandbox_cidr.Contains(address) || (address >> 24) == 127) return true;
  if (std::find(limits.host_addresses.begin(), limits.host_addresses.end(), address) !=
      limits.host_addresses.end()) {
    return true;
  }
  for (const Ipv4Cidr& open : limits.allowed_private) {
    if (open.Contains(address)) return false;
  }
  for (const Ipv4Cidr& closed : NeverReachableRanges()) {
    if (closed.Contains(address)) return true;
  }
  return false;
}

bool MatchesDomain(const EgressEntry& entry, std::string_view name) {
  if (name.empty()) return false;
  switch (entry.kind) {
    case EgressEntry::Kind::kDomain:
      return name == entry.domain;
    case EgressEntry::Kind::kWildcardDomain:
      return name.size() > entry.domain.size() + 1 && name.ends_with(entry.domain) &&
             name[name.size() - entry.domain.size() - 1] == '.';
    case EgressEntry::Kind::kCidr:
      return false;
  }
  return false;
}

namespace {

bool MatchesName(const std::vector<EgressEntry>& entries, std::string_view name) {
  return std::any_of(entries.begin(), entries.end(),
                     [&](const EgressEntry& entry) { return MatchesDomain(entry, name); });
}

bool MatchesAddress(const std::vector<EgressEntry>& entries, uint32_t address) {
  return std::any_of(entries.begin(), entries.end(), [&](const EgressEntry& entry) {
    return entry.kind == EgressEntry::Kind::kCidr && entry.cidr.Contains(address);
  });
}

}  // namespace

Verdict Decide(const NetworkConfig& config, std::string_view name, uint32_t address) {
  if (MatchesName(config.allow_out, name) || MatchesAddress(config.allow_out, address)) {
    return Verdict::kAllow;
  }
  if (!config.internet) return Verdict::kDeny;
  if (MatchesName(config.deny_out, name) || MatchesAddress(config.deny_out, address)) {
    return Verdict::kDeny;
  }
  return Verdict::kAllow;
}

}  // namespace isobox::net
