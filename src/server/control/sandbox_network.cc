#include "server/control/sandbox_network.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <set>

#include "base/log.h"
#include "base/thread_priority.h"
#include "net/block_claim.h"
#include "net/conntrack.h"
#include "net/dns_resolver.h"
#include "net/egress_policy.h"
#include "net/egress_proxy.h"
#include "net/firewall.h"
#include "net/intercept.h"
#include "net/links.h"
#include "net/nflog.h"
#include "runtime/netns.h"

namespace isobox::server {
namespace {

constexpr uint16_t kDnsPort = 53;
// The egress proxy on the gateway (net/egress_proxy.h): where the firewall redirects web
// connections of sandboxes with rules by name.
constexpr uint16_t kProxyPort = 3128;
// How long a create waits for its egressProxy's name to resolve.
constexpr std::chrono::seconds kCheckResolveTimeout{10};
// NFLOG groups this daemon may take for its log of denied packets: from a start derived
// from its table's name (so that daemons on one host mostly do not collide), the first
// free one (net/nflog.h).
constexpr uint16_t kLogGroupBase = 0x4000;
constexpr uint16_t kLogGroupSpan = 0x3000;
constexpr uint16_t kLogGroupTries = 256;

uint16_t FirstLogGroup(const std::string& table) {
  uint32_t hash = 2166136261u;  // FNV-1a
  for (char c : table) hash = (hash ^ static_cast<uint8_t>(c)) * 16777619u;
  return static_cast<uint16_t>(kLogGroupBase + hash % kLogGroupSpan);
}

std::string WhyLogged(std::string_view prefix) {
  if (prefix == net::kLogPrefixOverCap) return "over the connection limit";
  return "denied by the rules";
}

net::SandboxPolicy PolicyOf(const NetLease& lease, const net::NetworkConfig& config) {
  net::SandboxPolicy policy;
  policy.address = lease.address;
  policy.host_link = lease.link;
  // No internet is denyOut 0.0.0.0/0 (E2B): allowOut still opens what it names. The
  // resolver refuses sandboxes that need no names (net::NetworkConfig::NeedsDns).
  policy.internet = true;
  auto is_cidr = [](const net::EgressEntry& e) { return e.kind == net::EgressEntry::Kind::kCidr; };
  for (const net::EgressEntry& entry : config.allow_out) {
    if (is_cidr(entry)) policy.allow_out.push_back(entry.cidr);
  }
  for (const net::EgressEntry& entry : config.deny_out) {
    if (is_cidr(entry)) policy.deny_out.push_back(entry.cidr);
  }
  if (!config.internet) policy.deny_out.push_back(net::Ipv4Cidr{0, 0});
  if (config.HasDomains() || config.ProxiesAllWeb() || config.egress_proxy) {
    policy.web_proxy_port = kProxyPort;
    // Names to deny, headers to set: every web connection is the proxy's.
    policy.proxy_all_web = config.ProxiesAllWeb();
    // SECURITY: with an egressProxy, every TCP connection is the proxy's, to filter and
    // tunnel: none leaves directly (E2B: fails closed when the proxy is down).
    policy.tunnel_all_tcp = config.egress_proxy.has_value();
  }
  return policy;
}

}  // namespace

SandboxNetwork::SandboxNetwork(NetworkSettings settings, net::AddressPool pool)
    : settings_(std::move(settings)),
      pool_(std::move(pool)),
      target_(
          SpareCount{.base = settings_.spare_namespaces, .max = settings_.spare_namespaces * 4}) {}

Result<std::unique_ptr<SandboxNetwork>> SandboxNetwork::Start(NetworkSettings settings,
                                                              boost::asio::io_context& io,
                                                              const std::vector<Live>& live) {
  ASSIGN_OR_RETURN(std::vector<std::string> conflicts, net::ConflictingRoutes(settings.cidr));
  if (!conflicts.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox CIDR {} overlaps the host's route {} (another network or another "
                     "isoboxd): choose another with --sandbox-cidr",
                     settings.cidr.ToString(), conflicts.front());
  }
  ASSIGN_OR_RETURN(net::BlockClaim claim, net::BlockClaim::Take(settings.table, settings.cidr));
  ASSIGN_OR_RETURN(net::AddressPool pool, net::AddressPool::Make(settings.cidr));
  std::unique_ptr<SandboxNetwork> network(new SandboxNetwork(std::move(settings), std::move(pool)));
  network->claim_ = std::move(claim);
  SandboxNetwork& self = *network;
  // SECURITY: sandboxes reach other hosts only through this host's forwarding, and only
  // as this daemon's table allows (net/firewall.h).
  RETURN_IF_ERROR(net::EnableIpv4Forwarding());

  std::vector<net::SandboxPolicy> policies;
  std::set<uint32_t> kept;
  for (const Live& sandbox : live) {
    if (!sandbox.lease.Valid()) continue;
    if (auto reserved = self.pool_.Reserve(sandbox.lease.address); !reserved) {
      LOG_WARN("re-adopted sandbox at {}: {}", net::FormatIpv4(sandbox.lease.address),
               reserved.error().message);
      continue;
    }
    policies.push_back(PolicyOf(sandbox.lease, sandbox.config));
    self.configs_[sandbox.lease.address] = sandbox.config;
    kept.insert(sandbox.lease.address);
  }
  uint16_t log_group = 0;
  if (auto logging = self.StartDenialLog(io, log_group); !logging) {
    // Evidence, not isolation: the rules hold without it; the audit log then lacks the
    // kernel's refusals (the proxy's are still recorded).
    LOG_WARN("denied packets will not be audited: {}", logging.error().message);
  }
  net::FirewallConfig firewall{.table = self.settings_.table,
                               .sandbox_cidr = self.settings_.cidr,
                               .gateway = self.pool_.gateway(),
                               .allowed_private = self.settings_.allowed_private,
                               .gateway_udp_ports = {kDnsPort},
                               .gateway_tcp_ports = {kDnsPort, kProxyPort},
                               .log_group = log_group,
                               .max_connections = self.settings_.max_connections_per_sandbox};
  ASSIGN_OR_RETURN(self.firewall_, net::Firewall::Install(firewall, policies));
  // Links of sandboxes that are gone (a daemon killed with sandboxes it never cleaned up).
  ASSIGN_OR_RETURN(std::vector<net::HostLink> links, net::ListHostLinks());
  for (const net::HostLink& link : links) {
    if (!self.settings_.cidr.Contains(link.sandbox_address) || kept.contains(link.sandbox_address))
      continue;
    LOG_INFO("removing the link {} of a sandbox that is gone", link.name);
    if (auto deleted = net::DeleteHostLink(link.name); !deleted) {
      LOG_WARN("remove link {}: {}", link.name, deleted.error().message);
    }
  }
  SandboxNetwork* raw = network.get();
  net::DnsResolverConfig dns{
      .allow_source = [raw](uint32_t source) { return raw->ResolvesFor(source); }};
  if (self.settings_.dns_servers.empty()) {
    // A host without an IPv4 resolver still runs sandboxes: their lookups fail (SERVFAIL)
    // until the operator names one.
    auto upstreams = net::ReadUpstreamsFile("/etc/resolv.conf");
    if (upstreams) {
      dns.upstreams = std::move(*upstreams);
    } else {
      LOG_WARN(
          "sandbox DNS: {}; lookups in sandboxes will fail (name a resolver with "
          "--dns-server)",
          upstreams.error().message);
    }
  } else {
    for (const std::string& text : self.settings_.dns_servers) {
      ASSIGN_OR_RETURN(net::DnsUpstream upstream, net::ParseDnsUpstream(text));
      dns.upstreams.push_back(upstream);
    }
  }
  self.resolver_ = std::make_unique<net::DnsResolver>(io, std::move(dns));
  RETURN_IF_ERROR(self.resolver_->Listen(net::FormatIpv4(self.pool_.gateway()), kDnsPort));
  self.resolver_->Start();
  net::EgressProxyConfig proxy{
      .listen_address = self.pool_.gateway(),
      .listen_port = kProxyPort,
      .limits = {.sandbox_cidr = self.settings_.cidr,
                 .allowed_private = self.settings_.allowed_private,
                 .host_addresses = {}},
      .max_connections_per_sandbox = self.settings_.max_connections_per_sandbox};
  proxy.ca = self.settings_.ca;
  ASSIGN_OR_RETURN(std::unique_ptr<boost::asio::ssl::context> upstream_tls,
                   net::MakeUpstreamContext(self.settings_.upstream_ca_files));
  proxy.upstream_tls = std::move(upstream_tls);
  self.io_ = &io;
  ASSIGN_OR_RETURN(
      self.proxy_,
      net::EgressProxy::Start(
          io, proxy, [raw](uint32_t source) { return raw->ConfigOf(source); },
          [raw](std::string name) { return raw->resolver_->ResolveA(std::move(name)); },
          [raw](uint32_t source, const std::string& name, uint32_t address, uint16_t port,
                std::string_view why) {
            raw->Denied({.source = source,
                         .destination = address,
                         .port = port,
                         .protocol = IPPROTO_TCP,
                         .name = name,
                         .why = std::string(why),
                         .by = "proxy"});
          },
          [raw](uint32_t source, std::string_view name) -> Result<std::string> {
            if (!raw->resolve_secret_) {
              return MakeError(ErrorCode::kNotFound, "secret '{}' not found", name);
            }
            return raw->resolve_secret_(source, name);
          }));
  self.worker_ = std::jthread([raw = network.get()](std::stop_token stop) { raw->Run(stop); });
  LOG_INFO("sandbox network {} (gateway {}), nftables table {}", self.settings_.cidr.ToString(),
           net::FormatIpv4(self.pool_.gateway()), self.settings_.table);
  return network;
}

SandboxNetwork::~SandboxNetwork() {
  if (nflog_watch_) {
    boost::system::error_code ignored;
    nflog_watch_->close(ignored);
  }
  worker_.request_stop();
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::deque<PreparedNetns> spares;
  {
    std::lock_guard lock(mutex_);
    spares.swap(ready_);
  }
  for (PreparedNetns& spare : spares) Release(spare.lease);
  // The table stays: sandboxes a stopping daemon keeps (--on-exit keep) stay under their
  // rules until the next start replaces the table. Links go with their namespaces.
}

bool SandboxNetwork::ResolvesFor(uint32_t source) const {
  std::lock_guard lock(mutex_);
  auto it = configs_.find(source);
  return it != configs_.end() && it->second.NeedsDns();
}

std::optional<net::NetworkConfig> SandboxNetwork::ConfigOf(uint32_t source) const {
  std::lock_guard lock(mutex_);
  auto it = configs_.find(source);
  if (it == configs_.end()) return std::nullopt;
  return it->second;
}

void SandboxNetwork::SetOnDenied(OnDenied on_denied) { on_denied_ = std::move(on_denied); }

Status SandboxNetwork::Check(const net::NetworkConfig& config) const {
  if (!config.egress_proxy) return Ok();
  const net::EgressTunnel& tunnel = *config.egress_proxy;
  std::vector<uint32_t> addresses;
  if (auto literal = net::ParseIpv4(tunnel.host)) {
    addresses = {*literal};
  } else {
    std::future<Result<std::vector<uint32_t>>> future =
        boost::asio::co_spawn(*io_, resolver_->ResolveA(tunnel.host), boost::asio::use_future);
    if (future.wait_for(kCheckResolveTimeout) != std::future_status::ready) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'network.egressProxy.address': '{}' did not resolve within {} s",
                       tunnel.host, kCheckResolveTimeout.count());
    }
    auto resolved = future.get();
    if (!resolved) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'network.egressProxy.address': '{}' does not resolve: {}", tunnel.host,
                       resolved.error().message);
    }
    addresses = std::move(*resolved);
  }
  net::ReachLimits limits{.sandbox_cidr = settings_.cidr,
                          .allowed_private = settings_.allowed_private,
                          .host_addresses = net::HostIpv4Addresses()};
  for (uint32_t address : addresses) {
    // SECURITY: isoboxd connects to the proxy from the host: it must be somewhere a
    // sandbox may go (E2B refuses private and internal ranges the same way).
    if (net::NeverReachable(limits, address)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'network.egressProxy.address': {} ({}) is in a range no sandbox may "
                       "reach (this host, private, loopback, link-local; --allow-private-cidr "
                       "opens a private block)",
                       tunnel.Address(), net::FormatIpv4(address));
    }
  }
  return Ok();
}

void SandboxNetwork::SetSecretResolver(ResolveSecret resolve) {
  resolve_secret_ = std::move(resolve);
}
Status SandboxNetwork::StartDenialLog(boost::asio::io_context& io, uint16_t& group) {
  ASSIGN_OR_RETURN(nflog_, net::NflogReader::Open(FirstLogGroup(settings_.table), kLogGroupTries));
  UniqueFd watched(::fcntl(nflog_->fd(), F_DUPFD_CLOEXEC, 0));
  if (!watched) return SysError("watch the NFLOG socket");
  nflog_watch_ = std::make_unique<boost::asio::posix::stream_descriptor>(io, watched.Release());
  group = nflog_->group();
  WatchDenialLog();
  return Ok();
}

void SandboxNetwork::WatchDenialLog() {
  nflog_watch_->async_wait(boost::asio::posix::descriptor_base::wait_read,
                           [this](boost::system::error_code ec) {
                             if (ec) return;  // closed: the network is stopping
                             auto drained = nflog_->Drain([this](const net::LoggedPacket& packet) {
                               Denied({.source = packet.source,
                                       .destination = packet.destination,
                                       .port = packet.port,
                                       .protocol = packet.protocol,
                                       .why = WhyLogged(packet.why),
                                       .by = "firewall"});
                             });
                             if (!drained) LOG_WARN("{}", drained.error().message);
                             WatchDenialLog();
                           });
}

void SandboxNetwork::Denied(NetDenial denial) {
  {
    std::lock_guard lock(mutex_);
    // A packet from an address no sandbox holds (any more): nothing to name.
    if (!configs_.contains(denial.source)) return;
  }
  {
    std::lock_guard lock(denial_mutex_);
    auto admitted = throttle_.Admit(denial.source, denial.destination, denial.port, denial.name,
                                    std::chrono::steady_clock::now());
    if (!admitted) return;
    denial.held_back = *admitted;
  }
  if (on_denied_) on_denied_(denial);
}

uint64_t SandboxNetwork::DenialsHeldBack() const {
  std::lock_guard lock(denial_mutex_);
  return throttle_.held_back_total();
}

uint64_t SandboxNetwork::DenialLogsLost() const { return nflog_ ? nflog_->lost() : 0; }

Result<NetLease> SandboxNetwork::Attach(int netns_fd, bool default_policy) {
  ASSIGN_OR_RETURN(uint32_t address, pool_.Allocate());
  NetLease lease{.address = address, .link = net::HostLinkName(address)};
  if (auto linked = net::CreateSandboxLink(
          netns_fd, {.sandbox_address = address, .gateway = pool_.gateway()});
      !linked) {
    pool_.Release(address);
    return tl::unexpected(linked.error());
  }
  if (default_policy) {
    if (auto applied = Apply(lease, net::NetworkConfig{}); !applied) {
      Release(lease);
      return tl::unexpected(applied.error());
    }
  }
  return lease;
}

Result<NetLease> SandboxNetwork::Connect(int netns_fd) { return Attach(netns_fd, true); }

Result<PreparedNetns> SandboxNetwork::MakeNamespace() {
  ASSIGN_OR_RETURN(UniqueFd netns, runtime::MakeSandboxNetns());
  ASSIGN_OR_RETURN(NetLease lease, Attach(netns.Get(), true));
  return PreparedNetns{std::move(netns), std::move(lease)};
}

Result<UniqueFd> SandboxNetwork::Relink(const NetLease& lease) {
  if (!lease.Valid()) return MakeError(ErrorCode::kInternal, "relink: the sandbox has no lease");
  ASSIGN_OR_RETURN(UniqueFd netns, runtime::MakeSandboxNetns());
  RETURN_IF_ERROR(WithContext(net::DeleteHostLink(lease.link), "relink"));
  RETURN_IF_ERROR(net::CreateSandboxLink(
      netns.Get(), {.sandbox_address = lease.address, .gateway = pool_.gateway()}));
  return netns;
}

Result<PreparedNetns> SandboxNetwork::TakeNamespace() {
  {
    std::lock_guard lock(mutex_);
    if (!ready_.empty()) {
      PreparedNetns spare = std::move(ready_.front());
      ready_.pop_front();
      wake_.notify_all();
      return spare;
    }
    target_.Missed(std::chrono::steady_clock::now());
  }
  wake_.notify_all();
  return MakeNamespace();
}

void SandboxNetwork::Run(std::stop_token stop) {
  RunInBackground();
  std::unique_lock lock(mutex_);
  auto wanted = [this] { return ready_.size() < target_.Get(std::chrono::steady_clock::now()); };
  while (!stop.stop_requested()) {
    if (!wanted()) {
      // Woken by a take; the timeout lets the target shrink back after a burst.
      wake_.wait_for(lock, stop, std::chrono::seconds(10), wanted);
      continue;
    }
    lock.unlock();
    auto made = MakeNamespace();
    lock.lock();
    if (!made) {
      LOG_WARN("prepare a sandbox network namespace: {}", made.error().message);
      wake_.wait_for(lock, stop, std::chrono::seconds(5), [] { return false; });  // retry later
      continue;
    }
    ready_.push_back(std::move(*made));
  }
}

Status SandboxNetwork::Apply(const NetLease& lease, const net::NetworkConfig& config) {
  if (!lease.Valid()) {
    if (config.IsDefault() || !config.internet) return Ok();
    return MakeError(ErrorCode::kFailedPrecondition, "the sandbox has no network link");
  }
  RETURN_IF_ERROR(Check(config));
  RETURN_IF_ERROR(firewall_->Apply(PolicyOf(lease, config)));
  bool tunnel_changed = false;
  {
    std::lock_guard lock(mutex_);
    auto& current = configs_[lease.address];
    tunnel_changed = current.egress_proxy != config.egress_proxy;
    current = config;
  }
  // SECURITY: a new egressProxy takes every TCP connection from now on; connections the
  // kernel forwards already are cut (their conntrack entries go), so that none keeps
  // going out directly.
  if (tunnel_changed && config.egress_proxy) {
    if (auto flushed = net::DeleteConntrack(lease.address); !flushed) {
      LOG_WARN("sandbox {}: remove its forwarded connections for the new egressProxy: {}",
               net::FormatIpv4(lease.address), flushed.error().message);
    }
  }
  // Relayed connections the new rules deny are cut too (the kernel cuts the others).
  proxy_->Recheck(lease.address, config);
  return Ok();
}

void SandboxNetwork::Release(NetLease& lease) {
  if (!lease.Valid()) return;
  // SECURITY: the link goes first: this daemon's table judges its own links only (those
  // with rules), so a link must never outlive its rules.
  if (auto deleted = net::DeleteHostLink(lease.link); !deleted) {
    // Fail closed: the rules and the address stay with the link.
    LOG_ERROR("remove link {}: {}; its rules and address stay", lease.link,
              deleted.error().message);
    lease = NetLease{};
    return;
  }
  if (auto removed = rules_removed_ ? Ok() : firewall_->Remove(lease.address); !removed) {
    LOG_WARN("remove the rules of {}: {}", lease.link, removed.error().message);
  }
  {
    std::lock_guard lock(mutex_);
    configs_.erase(lease.address);
  }
  proxy_->Forget(lease.address);
  {
    std::lock_guard lock(denial_mutex_);
    throttle_.Forget(lease.address);
  }
  // SECURITY: the address's connection tracking state goes before the address can be
  // leased again: a new sandbox there must not inherit the old one's NAT mappings or the
  // replies to its connections. The link is gone, so no new entry can appear.
  if (auto flushed = net::DeleteConntrack(lease.address); !flushed) {
    // Fail closed: an address whose state may linger is never leased again.
    LOG_ERROR("remove the conntrack entries of {}: {}; the address stays taken",
              net::FormatIpv4(lease.address), flushed.error().message);
    lease = NetLease{};
    return;
  }
  pool_.Release(lease.address);
  lease = NetLease{};
}

Result<NetCounters> SandboxNetwork::Read(const NetLease& lease) {
  if (!lease.Valid()) return NetCounters{};
  ASSIGN_OR_RETURN(net::Firewall::Counters counters, firewall_->Read(lease.address));
  net::EgressProxy::Counters proxied = proxy_->Read(lease.address);
  return NetCounters{.egress_bytes = counters.egress_bytes + proxied.bytes_out,
                     .egress_packets = counters.egress_packets,
                     .denied_packets = counters.denied_packets,
                     .denied_connections = counters.denied_connections + proxied.denied};
}

Result<std::map<uint32_t, NetCounters>> SandboxNetwork::ReadAll() {
  ASSIGN_OR_RETURN(auto kernel, firewall_->ReadAll());
  std::map<uint32_t, net::EgressProxy::Counters> proxied = proxy_->ReadAll();
  std::map<uint32_t, NetCounters> out;
  for (const auto& [address, counters] : kernel) {
    const net::EgressProxy::Counters& relayed = proxied[address];
    out[address] = NetCounters{.egress_bytes = counters.egress_bytes + relayed.bytes_out,
                               .egress_packets = counters.egress_packets,
                               .denied_packets = counters.denied_packets,
                               .denied_connections = counters.denied_connections + relayed.denied};
  }
  return out;
}

void SandboxNetwork::RemoveRules() {
  rules_removed_ = true;
  if (auto removed = firewall_->Uninstall(); !removed) {
    LOG_WARN("remove nftables table {}: {}", settings_.table, removed.error().message);
  }
}

std::string SandboxNetwork::ResolvConf() const {
  return fmt::format("nameserver {}\n", net::FormatIpv4(pool_.gateway()));
}

std::string SandboxNetwork::Hosts(const NetLease& lease, const std::string& hostname) const {
  std::string own = lease.Valid() ? net::FormatIpv4(lease.address) : "127.0.1.1";
  return fmt::format("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                     own, hostname);
}

}  // namespace isobox::server
