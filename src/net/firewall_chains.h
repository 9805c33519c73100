// The fixed part of the sandboxes' nftables table (net/firewall_rules.h): its sets and
// chains, rendered once at Install. A sandbox's policy is elements of these sets
// (SandboxElements); nothing here depends on a sandbox.
//
// The chains, in a packet's order:
//   prerouting (raw)   from_link: spoofed sources and IPv6 from sandbox links dropped
//   dstnat             web_redirect: denied web connections to the egress proxy (DNAT)
//   forward            from_sandbox: the address rules; to_sandbox: replies only
//   input / output     to_host: the gateway's service ports only; to_sandbox
//   verdicts           accept_egress (the connection cap, then counted and accepted),
//                      over_cap and deny (counted, logged to NFLOG, rejected)
//   postrouting        masquerade out of the host
#pragma once

#include <string>
#include <string_view>

#include "net/firewall_rules.h"

namespace isobox::net {

// The name of the hash set of `list` ("allow", "deny") for prefix length `prefix`.
std::string SetName(std::string_view list, int prefix);

// The sets and chains of the table, each line tab-indented, for inside `table inet X { }`.
void AppendTableBody(const FirewallConfig& config, std::string& out);

}  // namespace isobox::net
