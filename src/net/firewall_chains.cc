#include "net/firewall_chains.h"

#include <fmt/format.h>

#include <set>
#include <vector>

namespace isobox::net {
namespace {

std::string PortList(const std::vector<uint16_t>& ports) {
  std::set<uint16_t> sorted(ports.begin(), ports.end());
  return fmt::format("{{ {} }}", fmt::join(sorted, ", "));
}

void AppendSets(const FirewallConfig& config, std::string& out) {
  std::vector<std::string> unreachable;
  for (const auto& block : UnreachableBlocks(config)) unreachable.push_back(block.ToString());
  out += fmt::format(
      "\tset unreachable {{\n\t\ttype ipv4_addr\n\t\tflags interval\n"
      "\t\telements = {{ {} }}\n\t}}\n",
      fmt::join(unreachable, ", "));
  out +=
      "\tset links {\n\t\ttype ifname . ipv4_addr\n\t}\n"
      "\tset egress {\n\t\ttype ifname\n\t\tcounter\n\t}\n"
      "\tset denied {\n\t\ttype ifname\n\t\tcounter\n\t}\n"
      "\tset refused {\n\t\ttype ifname\n\t\tcounter\n\t}\n"
      "\tset offline {\n\t\ttype ipv4_addr\n\t}\n"
      "\tset ruled {\n\t\ttype ipv4_addr\n\t}\n"
      "\tset web_all {\n\t\ttype ipv4_addr\n\t}\n"
      "\tset tunnel_all {\n\t\ttype ipv4_addr\n\t}\n"
      "\tmap web_proxy {\n\t\ttype ipv4_addr : ipv4_addr . inet_service\n\t}\n";
  // Keyed by source address, filled by the packets themselves (dynamic): the connection
  // cap's count and the log's rate limit of each sandbox. Live sandboxes are at most
  // 4094 per daemon (--max-sandboxes), far below the size; an element whose count falls to
  // zero, or whose limit sees no packet for a minute, goes by itself.
  out += fmt::format(
      "\tset flows {{\n\t\ttype ipv4_addr\n\t\tsize {0}\n\t\tflags dynamic\n\t}}\n"
      "\tset log_rate {{\n\t\ttype ipv4_addr\n\t\tsize {0}\n\t\tflags dynamic,timeout\n"
      "\t\ttimeout 1m\n\t}}\n",
      kMaxTrackedSandboxes);
  for (std::string_view list : {"allow", "deny"}) {
    for (int prefix = 0; prefix <= 32; prefix += kPrefixStride) {
      out +=
          fmt::format("\tset {} {{\n\t\ttype ipv4_addr . ipv4_addr\n\t}}\n", SetName(list, prefix));
    }
  }
}

// One rule per prefix set: `<match> <list>_p<N> <verdict>`.
void AppendLookups(std::string_view list, std::string_view before, std::string_view verdict,
                   std::string& out) {
  for (int prefix = 0; prefix <= 32; prefix += kPrefixStride) {
    Ipv4Cidr mask{0, prefix};
    out += fmt::format("\t\t{}ip saddr . ip daddr & {} @{} {}\n", before, FormatIpv4(mask.Mask()),
                       SetName(list, prefix), verdict);
  }
}

// This daemon's links are the ones with an element in @egress (one per applied sandbox):
// every chain below judges those only, so that several daemons on one host (each with its
// own table and sandbox block) never judge each other's sandboxes. A link is applied
// before anything runs in its namespace, and deleted before its policy is removed.
//
// SECURITY: before conntrack (priority raw), every packet from one of this daemon's links
// must carry the address applied for that link: spoofed sources and IPv6 are dropped here
// and never get a conntrack entry.
//
// A link named for an address of this daemon's block ("ib" + the address in hex:
// net/links.h) but not applied (yet, or any more) is this daemon's too: its packets are
// dropped. Such names are matched by their hex prefix, one wildcard per value of the
// block's partial hex digit (at most 8).
void AppendLinkChains(const FirewallConfig& config, std::string& out) {
  out += "\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n";
  for (const std::string& pattern : LinkNamePatterns(config.sandbox_cidr)) {
    out += fmt::format("\t\tiifname \"{}\" jump from_link\n", pattern);
  }
  out +=
      "\t}\n"
      "\tchain from_link {\n\t\tmeta nfproto ipv6 drop\n"
      "\t\tiifname . ip saddr @links return\n\t\tiifname @denied\n\t\tdrop\n\t}\n";
}

// Domain rules: new TCP connections to ports 80/443 that the address rules deny go to
// isoboxd's proxy (only sandboxes with an element in @web_proxy; a miss leaves the packet
// alone and the forward chain rejects it).
void AppendRedirectChains(std::string& out) {
  out +=
      "\tchain dstnat {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
      "\t\tiifname @egress meta l4proto tcp ip saddr @tunnel_all jump tunnel_redirect\n"
      "\t\tiifname @egress meta l4proto tcp th dport { 80, 443 } ip saddr @ruled "
      "jump web_redirect\n\t}\n"
      "\tchain tunnel_redirect {\n\t\tip daddr @unreachable return\n"
      "\t\tmeta l4proto tcp dnat ip to ip saddr map @web_proxy\n\t}\n"
      "\tchain web_redirect {\n\t\tip daddr @unreachable return\n"
      "\t\tip saddr @web_all meta l4proto tcp dnat ip to ip saddr map @web_proxy\n";
  AppendLookups("allow", "", "return", out);
  AppendLookups("deny", "meta l4proto tcp ", "dnat ip to ip saddr map @web_proxy", out);
  out += "\t}\n";
}

// SECURITY: every forwarded packet a sandbox sends is checked, not only new connections,
// so that narrower rules cut open connections at once. Inbound: replies only.
void AppendForwardChains(std::string& out) {
  out +=
      "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
      "\t\tiifname @egress jump from_sandbox\n\t\toifname @egress jump to_sandbox\n\t}\n"
      "\tchain from_sandbox {\n\t\tct state invalid,untracked drop\n"
      "\t\tip daddr @unreachable goto deny\n\t\tip saddr @offline goto deny\n"
      "\t\tip saddr != @ruled goto accept_egress\n";
  AppendLookups("allow", "", "goto accept_egress", out);
  AppendLookups("deny", "", "goto deny", out);
  out += "\t\tgoto accept_egress\n\t}\n";
  out += "\tchain to_sandbox {\n\t\tct direction reply accept\n\t\tdrop\n\t}\n";
}

// SECURITY: the host itself, on every address and port, is closed to sandboxes but for
// the gateway's listed service ports, and those only for sandboxes with internet. Host
// processes open no connection into a sandbox either (output: replies only).
void AppendHostChains(const FirewallConfig& config, std::string& out) {
  std::string gateway = FormatIpv4(config.gateway);
  out +=
      "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
      "\t\tiifname @egress jump to_host\n\t}\n"
      "\tchain to_host {\n\t\tct state invalid,untracked drop\n"
      "\t\tip saddr @offline goto deny\n";
  if (!config.gateway_udp_ports.empty()) {
    out += fmt::format("\t\tip daddr {} udp dport {} goto accept_egress\n", gateway,
                       PortList(config.gateway_udp_ports));
  }
  if (!config.gateway_tcp_ports.empty()) {
    out += fmt::format("\t\tip daddr {} tcp dport {} goto accept_egress\n", gateway,
                       PortList(config.gateway_tcp_ports));
  }
  out += "\t\tgoto deny\n\t}\n";
  out +=
      "\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n"
      "\t\toifname @egress jump to_sandbox\n\t}\n";
}

// SECURITY: a sandbox's new connections (forwarded, or to the gateway's services) count
// against --max-connections-per-sandbox (FirewallConfig::max_connections): one sandbox
// cannot fill the host's conntrack table, which would break every other sandbox's and the
// host's own new connections. The count is taken only for connections the rules let
// through, so denied attempts never use up the cap.
void AppendAcceptChain(const FirewallConfig& config, std::string& out) {
  out += fmt::format(
      "\tchain accept_egress {{\n"
      "\t\tct state new add @flows {{ ip saddr ct count over {} }} goto over_cap\n"
      "\t\tiifname @egress accept\n\t\taccept\n\t}}\n",
      config.max_connections);
}

// A refusal: counted per link (packets in @denied, new connections in @refused), logged
// to the NFLOG group when there is one (at most kLogRate per sandbox: a flood of denied
// packets is a trickle of log messages), then rejected so that the sandbox's program
// learns at once (a reset, an ICMP error) instead of waiting for a timeout.
void AppendRefusalChain(const FirewallConfig& config, std::string_view chain,
                        std::string_view reason, std::string& out) {
  out +=
      fmt::format("\tchain {} {{\n\t\tiifname @denied\n\t\tct state new iifname @refused\n", chain);
  if (config.log_group != 0) {
    out += fmt::format(
        "\t\tupdate @log_rate {{ ip saddr limit rate {}/second burst {} packets }} "
        "log prefix \"{}\" group {}\n",
        kLogRatePerSecond, kLogBurst, reason, config.log_group);
  }
  out +=
      "\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmpx admin-prohibited\n\t}\n";
}

// The verdicts; then NAT out of the host.
void AppendVerdictAndNatChains(const FirewallConfig& config, std::string& out) {
  AppendAcceptChain(config, out);
  AppendRefusalChain(config, "over_cap", kLogPrefixOverCap, out);
  AppendRefusalChain(config, "deny", kLogPrefixDenied, out);
  out += fmt::format(
      "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
      "\t\tip saddr {} oifname != @egress masquerade\n\t}}\n",
      config.sandbox_cidr.ToString());
}

}  // namespace

std::string SetName(std::string_view list, int prefix) {
  return fmt::format("{}_p{}", list, prefix);
}

void AppendTableBody(const FirewallConfig& config, std::string& out) {
  AppendSets(config, out);
  AppendLinkChains(config, out);
  AppendRedirectChains(out);
  AppendForwardChains(out);
  AppendHostChains(config, out);
  AppendVerdictAndNatChains(config, out);
}

}  // namespace isobox::net
