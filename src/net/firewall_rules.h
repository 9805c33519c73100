// The sandboxes' firewall as nftables text: what the kernel enforces for every packet a
// sandbox sends, rendered here without touching the kernel so that it is unit-testable.
// net/firewall.h hands these texts to libnftables, each as one atomic transaction.
//
// One `inet` table per daemon. Its chains are fixed at Install; a sandbox's policy is
// nothing but elements of the table's sets and maps (keyed by the sandbox's address or
// its host link), so applying or removing one sandbox is an element update: no rule is
// added, no chain is made, and the cost does not grow with the number of sandboxes
// (libnftables fetches no elements of hash sets and the kernel revalidates no chain).
//
// CIDR rules use hash sets per prefix length (controlled prefix expansion): a block of
// prefix p is stored as the blocks of prefix ceil(p/4)*4 that cover it (at most 8), in
// the set for that length, and a packet is looked up in each of the 9 sets with its
// destination masked to that length. Interval sets were measured and rejected: a
// concatenated interval set (pipapo) costs milliseconds per element deleted once it holds
// thousands, and libnftables reads every element of a plain interval set before each
// command.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/cidr.h"

namespace isobox::net {

inline constexpr uint32_t kDefaultMaxConnections = 1024;
inline constexpr uint32_t kMaxMaxConnections = 1u << 20;
// The size of the sets keyed by sandbox address that the packets fill (the connection
// cap's counts, the log's rate limits): well above the live sandboxes of one daemon.
inline constexpr uint32_t kMaxTrackedSandboxes = 65536;
// The kernel's rate limit of denied-packet log messages, per sandbox.
inline constexpr unsigned kLogRatePerSecond = 5;
inline constexpr unsigned kLogBurst = 10;
// The NFLOG prefixes: why a logged packet was refused.
inline constexpr std::string_view kLogPrefixDenied = "rules";
inline constexpr std::string_view kLogPrefixOverCap = "conn-limit";

struct FirewallConfig {
  std::string table;  // this daemon's nftables table (inet family): [a-z][a-z0-9_]{0,31}
  Ipv4Cidr sandbox_cidr;
  uint32_t gateway = 0;                     // on the host end of every sandbox's link
  std::vector<Ipv4Cidr> allowed_private;    // the operator's --allow-private-cidr
  std::vector<uint16_t> gateway_udp_ports;  // isoboxd services sandboxes may reach: DNS 53
  std::vector<uint16_t> gateway_tcp_ports;  // DNS 53, the egress proxy's port
  // The NFLOG group denied packets are logged to (net/nflog.h), at most kLogRatePerSecond
  // per sandbox; 0: not logged.
  uint16_t log_group = 0;
  // Connections a sandbox may have tracked at once, forwarded or to the gateway's
  // services (--max-connections-per-sandbox); new ones over it are refused.
  uint32_t max_connections = kDefaultMaxConnections;
};

struct SandboxPolicy {
  uint32_t address = 0;
  std::string host_link;  // the host end of the sandbox's veth: "ib" + 8 hex digits
  bool internet = true;   // false: nothing leaves the sandbox, DNS to the gateway included
  // E2B semantics: a destination in allow_out is allowed, else one in deny_out is denied,
  // else allowed. Both empty: everything allowed (but the always-unreachable ranges).
  std::vector<Ipv4Cidr> allow_out;
  std::vector<Ipv4Cidr> deny_out;
  // Set when the sandbox has domain rules: new TCP connections to ports 80 and 443 that
  // the address rules deny are redirected (DNAT) to gateway:port, where isoboxd's proxy
  // decides by Host/SNI. Must be one of the config's gateway_tcp_ports.
  std::optional<uint16_t> web_proxy_port;
  // With web_proxy_port: every new TCP connection to ports 80 and 443 goes to the proxy,
  // whatever the address rules say (the sandbox denies names: the proxy decides).
  bool proxy_all_web = false;
  // With web_proxy_port: every new TCP connection, to any port, goes to the proxy, which
  // tunnels what the rules allow through the sandbox's SOCKS5 egressProxy (UDP is left to
  // the forward chain, as E2B leaves it).
  bool tunnel_all_tcp = false;

  bool operator==(const SandboxPolicy&) const = default;
};

// Limits (issue 19 point 9). Each list is expanded to at most 8 hash elements per entry.
inline constexpr size_t kMaxCidrsPerList = 128;
inline constexpr size_t kMaxGatewayPorts = 16;
inline constexpr size_t kMaxAllowedPrivate = 64;
// Prefix lengths of the hash sets: 0, 4, 8, ..., 32.
inline constexpr int kPrefixStride = 4;

Status ValidateFirewallConfig(const FirewallConfig& config);
Status ValidateSandboxPolicy(const FirewallConfig& config, const SandboxPolicy& policy);

// Where no sandbox may send, whatever its policy, as sorted disjoint CIDR blocks: the
// special-purpose ranges (RFC 1918, CGNAT, loopback, link-local, multicast, reserved...)
// minus the operator's allowed_private, plus the sandbox block itself.
std::vector<Ipv4Cidr> UnreachableBlocks(const FirewallConfig& config);

// The names of links for addresses of `block` ("ib" + 8 hex digits), as nftables
// wildcards: "ib0acd*" for 10.205.0.0/16; four for a /22.
std::vector<std::string> LinkNamePatterns(const Ipv4Cidr& block);

// `cidrs` as blocks whose prefix lengths are multiples of kPrefixStride, deduplicated.
std::vector<Ipv4Cidr> ExpandToStrides(const std::vector<Ipv4Cidr>& cidrs);

// One element of one of the table's sets or maps. `value` is empty for sets.
struct FirewallElement {
  std::string set;
  std::string key;
  std::string value;
  auto operator<=>(const FirewallElement&) const = default;
};

// The elements that make up one sandbox's policy, sorted.
std::vector<FirewallElement> SandboxElements(const FirewallConfig& config,
                                             const SandboxPolicy& policy);

struct CounterValues {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  bool operator==(const CounterValues&) const = default;
};

// Counters to carry into a new table (from the one it replaces), by link name.
struct CarriedCounters {
  std::map<std::string, CounterValues> egress;
  std::map<std::string, CounterValues> denied;
  std::map<std::string, CounterValues> refused;
};

// The whole table with the live sandboxes' elements; replaces a table of the same name
// (a stale one left by a crashed daemon) in the same transaction. The live sandboxes'
// counters start from `carried`.
std::string RenderInstall(const FirewallConfig& config, const std::vector<SandboxPolicy>& live,
                          const CarriedCounters& carried = {});
// Replaces `previous` (nullptr: none) with `next`: deletes the elements only the old
// policy has, adds those only the new one has. Empty when nothing changes.
std::string RenderApply(const FirewallConfig& config, const SandboxPolicy* previous,
                        const SandboxPolicy& next);
std::string RenderRemove(const FirewallConfig& config, const SandboxPolicy& applied);
// Drops the table; not an error when it does not exist.
std::string RenderUninstall(const std::string& table);
// Reads libnftables' JSON listing of one counter set (`list set` with JSON output): each
// element's name (a sandbox link) and counter. Elements without a counter are skipped.
Result<std::map<std::string, CounterValues>> ParseCounterListing(std::string_view json);

}  // namespace isobox::net
