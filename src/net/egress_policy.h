// What a sandbox may reach, decided in one place for connections the egress proxy sees
// (net/egress_proxy.h). The kernel's firewall (net/firewall.h) decides the same for
// packets by address; the proxy adds names (Host, SNI) and checks the address it resolved
// itself, so that a sandbox lying in DNS reaches only what its rules allow.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "net/cidr.h"
#include "net/network_config.h"

namespace isobox::net {

// Never reachable from a sandbox, whatever its rules (docs/security.md): this host's own
// networks, private, shared (CGNAT), link-local, loopback, multicast and reserved ranges,
// and the sandboxes' block itself. An operator opens private blocks with
// --allow-private-cidr; the sandboxes' block and loopback stay closed.
struct ReachLimits {
  Ipv4Cidr sandbox_cidr;
  std::vector<Ipv4Cidr> allowed_private;
  std::vector<uint32_t> host_addresses;  // this host's own IPv4 addresses
};

// This host's own IPv4 addresses, now (interfaces come and go): for host_addresses.
std::vector<uint32_t> HostIpv4Addresses();

// The ranges above, as the firewall blocks them too.
const std::vector<Ipv4Cidr>& NeverReachableRanges();
bool NeverReachable(const ReachLimits& limits, uint32_t address);

enum class Verdict { kAllow, kDeny };

// E2B's order: allowOut (by name, then by address) wins; then denyOut; then the
// sandbox's internet default. `name` may be empty (TLS without SNI). NeverReachable is
// checked by the caller first.
Verdict Decide(const NetworkConfig& config, std::string_view name, uint32_t address);

}  // namespace isobox::net
