// The sandboxes' network (README "Network", docs/architecture.md "The packet's path"):
// every sandbox's network namespace gets a veth link to the host (net/links.h), an
// address from --sandbox-cidr (net/address_pool.h), its egress policy in this daemon's
// nftables table (net/firewall.h), and a resolver on the gateway (net/dns_resolver.h).
//
// Links and the default policy are made ahead of creates: for a cgroup v1 spare's zygote
// (control/spares.h: Connect on its namespace) and, for the direct clone path, as
// prepared namespaces kept by a thread of this class (TakeNamespace). A create whose
// config is not the default applies it (one firewall transaction) before its init runs.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/spare_target.h"
#include "base/unique_fd.h"
#include "net/address_pool.h"
#include "net/block_claim.h"
#include "net/cidr.h"
#include "net/denial_throttle.h"
#include "net/network_config.h"

namespace isobox::net {
class MitmCa;
class Firewall;
class DnsResolver;
class EgressProxy;
class NflogReader;
struct LoggedPacket;
}  // namespace isobox::net

namespace isobox::server {

struct NetworkSettings {
  bool enabled = true;  // false (--no-network): loopback only, as before issue 19
  net::Ipv4Cidr cidr;   // --sandbox-cidr
  std::vector<net::Ipv4Cidr> allowed_private;  // --allow-private-cidr
  // Upstream resolvers as "a.b.c.d" or "a.b.c.d:port" (--dns-server); empty: the host's
  // /etc/resolv.conf.
  std::vector<std::string> dns_servers;
  std::string table;  // this daemon's nftables table
  size_t spare_namespaces = 2;
  // The egress CA (net/mitm_ca.h) for rules with headers over HTTPS, and the CA files
  // upstream certificates may also chain to (--upstream-ca; the host's store always).
  std::shared_ptr<net::MitmCa> ca;
  std::vector<std::string> upstream_ca_files;
  // --max-connections-per-sandbox: connections a sandbox may have open at once, in the
  // kernel (forwarded and to the gateway) and through the egress proxy.
  uint32_t max_connections_per_sandbox = 1024;
};

// One sandbox's place on the network. address 0: none (loopback only).
struct NetLease {
  uint32_t address = 0;
  std::string link;  // the host end of its veth
  bool Valid() const { return address != 0; }
};

// A network namespace made ahead, with its link and the default policy.
struct PreparedNetns {
  UniqueFd netns;
  NetLease lease;
};

// What a sandbox sent, since its lease began (README "Network": the metrics).
struct NetCounters {
  uint64_t egress_bytes = 0;    // forwarded by the kernel, and relayed by the egress proxy
  uint64_t egress_packets = 0;  // forwarded by the kernel (or to the gateway)
  uint64_t denied_packets = 0;  // refused or dropped by the kernel
  // New connections refused: by the kernel (rules, the connection cap) and by the egress
  // proxy (rules by name).
  uint64_t denied_connections = 0;
};

// A refused connection or packet, for the audit log (network.denied). Never a payload.
struct NetDenial {
  uint32_t source = 0;       // the sandbox's address
  uint32_t destination = 0;  // 0: none (a name that did not resolve)
  uint16_t port = 0;         // 0: none (ICMP, a fragment)
  uint8_t protocol = 0;      // IPPROTO_*; the proxy's are TCP
  std::string name{};        // the name the proxy saw (Host, SNI); empty from the kernel
  std::string why{};         // "denied by the rules", "over the connection limit", ...
  std::string by{};          // "firewall" or "proxy"
  uint64_t held_back = 0;    // the sandbox's refusals not recorded since its last record
};

class SandboxNetwork {
 public:
  // A live sandbox a restarted daemon found (re-adopted with its lease and config).
  struct Live {
    NetLease lease;
    net::NetworkConfig config;
  };

  // Checks the CIDR against the host's routes, turns on forwarding, installs the table
  // (replacing a stale one) with the live sandboxes' policies, removes links of
  // sandboxes that are gone, and starts the resolver on the gateway.
  static Result<std::unique_ptr<SandboxNetwork>> Start(NetworkSettings settings,
                                                       boost::asio::io_context& io,
                                                       const std::vector<Live>& live);
  ~SandboxNetwork();  // removes the table; links go with their namespaces
  SandboxNetwork(const SandboxNetwork&) = delete;
  SandboxNetwork& operator=(const SandboxNetwork&) = delete;

  uint32_t gateway() const { return pool_.gateway(); }
  const NetworkSettings& settings() const { return settings_; }

  // Refuses what this daemon cannot give a sandbox: an egressProxy whose name does not
  // resolve, or that is at an address no sandbox may reach. Blocks for the resolver: call
  // it off the I/O thread.
  Status Check(const net::NetworkConfig& config) const;
  // A link and the default policy for the namespace of `netns_fd` (a zygote's).
  Result<NetLease> Connect(int netns_fd);
  // A prepared namespace (made now when none is ready).
  Result<PreparedNetns> TakeNamespace();
  // A new namespace linked at `lease`, which keeps its address and rules: for a paused
  // sandbox whose namespace ended with its processes or with an earlier isoboxd. A host
  // link left of the old one is replaced.
  Result<UniqueFd> Relink(const NetLease& lease);
  // The sandbox's policy from `config` (after Check), replacing what it had, in one
  // transaction.
  Status Apply(const NetLease& lease, const net::NetworkConfig& config);
  // Removes the sandbox's rules and link and frees its address. Idempotent.
  void Release(NetLease& lease);
  Result<NetCounters> Read(const NetLease& lease);
  // Every leased sandbox's counters by address, with one bulk read of the kernel's (for
  // /isobox/metrics and the metrics sampler).
  Result<std::map<uint32_t, NetCounters>> ReadAll();
  // Removes this daemon's table (at a stop that leaves no sandbox running).
  void RemoveRules();

  // Refused connections, from the egress proxy and the kernel's log (NFLOG), already
  // deduplicated and rate-limited per sandbox (net/denial_throttle.h). Called on the I/O
  // thread. Set before the first sandbox.
  using OnDenied = std::function<void(const NetDenial& denial)>;
  void SetOnDenied(OnDenied on_denied);
  // Refusals held back by the rate limit, and kernel log messages lost (socket full).
  uint64_t DenialsHeldBack() const;
  uint64_t DenialLogsLost() const;
  // Stored secrets for the headers of a sandbox's rules, by the sandbox's address (the
  // registry checks that the sandbox's owner may use the secret). Set before the first
  // sandbox.
  using ResolveSecret = std::function<Result<std::string>(uint32_t source, std::string_view name)>;
  void SetSecretResolver(ResolveSecret resolve);

  // /etc/resolv.conf and /etc/hosts for a sandbox named `hostname` at `lease`.
  std::string ResolvConf() const;
  std::string Hosts(const NetLease& lease, const std::string& hostname) const;

 private:
  SandboxNetwork(NetworkSettings settings, net::AddressPool pool);
  Result<NetLease> Attach(int netns_fd, bool default_policy);
  Result<PreparedNetns> MakeNamespace();
  void Run(std::stop_token stop);
  bool ResolvesFor(uint32_t source) const;
  Status StartDenialLog(boost::asio::io_context& io, uint16_t& group);
  void WatchDenialLog();
  void Denied(NetDenial denial);
  std::optional<net::NetworkConfig> ConfigOf(uint32_t source) const;

  const NetworkSettings settings_;
  net::AddressPool pool_;
  std::unique_ptr<net::Firewall> firewall_;
  std::unique_ptr<net::DnsResolver> resolver_;
  std::unique_ptr<net::EgressProxy> proxy_;
  mutable std::mutex mutex_;
  std::map<uint32_t, net::NetworkConfig> configs_;  // by sandbox address
  OnDenied on_denied_;                              // set before the first sandbox
  ResolveSecret resolve_secret_;                    // set before the first sandbox
  boost::asio::io_context* io_ = nullptr;
  mutable std::mutex denial_mutex_;  // guards throttle_
  net::DenialThrottle throttle_;
  std::unique_ptr<net::NflogReader> nflog_;  // null when the kernel's log is unavailable
  std::unique_ptr<boost::asio::posix::stream_descriptor> nflog_watch_;
  std::atomic<bool> rules_removed_{false};
  std::optional<net::BlockClaim> claim_;  // this daemon's block, host-wide
  std::deque<PreparedNetns> ready_;
  SpareTarget target_;
  std::condition_variable_any wake_;
  std::jthread worker_;  // last: joined before the members above go
};

}  // namespace isobox::server
