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
#include "net/network_config.h"

namespace isobox::net {
class MitmCa;
class Firewall;
class DnsResolver;
class EgressProxy;
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

struct NetCounters {
  uint64_t egress_bytes = 0;
  uint64_t egress_packets = 0;
  uint64_t denied_packets = 0;
  uint64_t denied_connections = 0;  // by the egress proxy (rules by name)
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
  // The sandbox's policy from `config` (after Check), replacing what it had, in one
  // transaction.
  Status Apply(const NetLease& lease, const net::NetworkConfig& config);
  // Removes the sandbox's rules and link and frees its address. Idempotent.
  void Release(NetLease& lease);
  Result<NetCounters> Read(const NetLease& lease);
  // Removes this daemon's table (at a stop that leaves no sandbox running).
  void RemoveRules();

  // Audit records of refused connections (rate-limited per sandbox by the caller).
  using OnDenied = std::function<void(uint32_t source, const std::string& name, uint32_t address,
                                      uint16_t port, std::string_view why)>;
  void SetOnDenied(OnDenied on_denied);
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
  std::atomic<bool> rules_removed_{false};
  std::optional<net::BlockClaim> claim_;  // this daemon's block, host-wide
  std::deque<PreparedNetns> ready_;
  SpareTarget target_;
  std::condition_variable_any wake_;
  std::jthread worker_;  // last: joined before the members above go
};

}  // namespace isobox::server
