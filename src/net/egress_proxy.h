// isoboxd's transparent egress proxy (README "Network", docs/architecture.md "The
// packet's path"). The firewall (net/firewall.h) redirects a sandbox's new TCP connections
// to ports 80 and 443 here when the sandbox has rules by name. The proxy reads the name the
// connection asks for (net/sniff.h: Host on 80, SNI on 443), resolves it itself, checks
// each address it got against what is never reachable and against the sandbox's rules
// (net/egress_policy.h), connects from the host to the first address allowed, and relays.
// A sandbox that lies in DNS, or asks for one name and connects to another address, reaches
// only what its rules allow for the name it sent.
//
// Rules with headers (net/transform_rules.h): the connection's requests go through a
// RequestRewriter (net/intercept.h), over TLS by interception with the daemon's MitmCa.
// An egressProxy (net/socks5.h): every TCP connection of the sandbox (the firewall sends
// all its ports here) is filtered as above and then tunnelled through the user's SOCKS5
// proxy; none goes out directly, so a proxy that is down fails the connection.
//
// Bounded: the bytes read before deciding (kMaxSniffBytes), the time to send them, the
// connections per sandbox, the idle time of a relayed connection. Runs on one
// io_context; Recheck and Read may be called from any thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/egress_policy.h"
#include "net/network_config.h"
#include "net/transform_rules.h"

namespace isobox::net {

class MitmCa;

struct EgressProxyConfig {
  uint32_t listen_address = 0;  // the gateway (bound with IP_FREEBIND)
  uint16_t listen_port = 0;     // 0: any (tests)
  ReachLimits limits;
  std::chrono::milliseconds sniff_timeout{5000};
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::seconds idle_timeout{600};
  size_t max_connections_per_sandbox = 512;
  // Interception for rules with headers on 443; null: such connections are refused.
  std::shared_ptr<MitmCa> ca{};
  std::shared_ptr<boost::asio::ssl::context> upstream_tls{};
};

class EgressProxy {
 public:
  // The sandbox at this source address and its rules; nullopt: not a sandbox.
  using Lookup = std::function<std::optional<NetworkConfig>(uint32_t source)>;
  using Resolve =
      std::function<boost::asio::awaitable<Result<std::vector<uint32_t>>>(std::string name)>;
  // A refused connection: the sandbox, the name asked (may be empty), the address (0: none
  // was allowed or resolved), the port it asked for, why. For the audit log (rate-limited
  // there).
  using OnDenied = std::function<void(uint32_t source, const std::string& name, uint32_t address,
                                      uint16_t port, std::string_view why)>;
  // A stored secret's value for the sandbox at `source` (`${e2b.secrets.<name>}`).
  using ResolveSecret = std::function<Result<std::string>(uint32_t source, std::string_view name)>;

  static Result<std::unique_ptr<EgressProxy>> Start(boost::asio::io_context& io,
                                                    EgressProxyConfig config, Lookup lookup,
                                                    Resolve resolve, OnDenied on_denied = {},
                                                    ResolveSecret resolve_secret = {});
  ~EgressProxy();

  uint16_t port() const { return port_; }
  // Cuts the sandbox's open connections that `config` denies now (a network update).
  void Recheck(uint32_t source, const NetworkConfig& config);

  struct Counters {
    uint64_t connections = 0;  // relayed
    uint64_t denied = 0;
    uint64_t bytes_out = 0;  // sandbox to upstream
    uint64_t bytes_in = 0;
  };
  Counters Read(uint32_t source) const;
  // Every sandbox's counters, by source address (one lock).
  std::map<uint32_t, Counters> ReadAll() const;
  void Forget(uint32_t source);  // the sandbox is gone

  struct Connection;  // one relayed connection (egress_proxy.cc)

 private:
  EgressProxy(boost::asio::io_context& io, EgressProxyConfig config, Lookup lookup, Resolve resolve,
              OnDenied on_denied, ResolveSecret resolve_secret);
  boost::asio::awaitable<void> Accept();
  bool Admit(uint32_t source);
  // One connection, from its first byte to its end (egress_connection.cc).
  boost::asio::awaitable<void> Serve(std::shared_ptr<Connection> connection);
  boost::asio::awaitable<Status> ConnectUpstream(std::shared_ptr<Connection> connection,
                                                 const NetworkConfig& config);
  boost::asio::awaitable<Status> ConnectTunnel(std::shared_ptr<Connection> connection,
                                               const EgressTunnel& tunnel);
  boost::asio::awaitable<Status> Relay(std::shared_ptr<Connection> connection,
                                       std::vector<uint8_t> head, bool tls);
  boost::asio::awaitable<void> Pump(std::shared_ptr<Connection> connection, bool outbound);
  boost::asio::awaitable<void> Copy(std::shared_ptr<Connection> connection, bool outbound);
  void Count(uint32_t source, size_t bytes, bool outbound);
  void Deny(Connection& connection, std::string_view why);

  boost::asio::io_context& io_;
  EgressProxyConfig config_;
  Lookup lookup_;
  Resolve resolve_;
  OnDenied on_denied_;
  ResolveSecret resolve_secret_;
  uint16_t port_ = 0;
  struct State;
  std::shared_ptr<State> state_;  // shared with the coroutines, which may outlive a stop
};

}  // namespace isobox::net
