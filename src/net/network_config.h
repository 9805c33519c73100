// A sandbox's network configuration as E2B's API gives it: `allow_internet_access` and
// the `network` object of POST /sandboxes (and PUT /sandboxes/{id}/network), parsed and
// checked in one place. Every entry is checked; the error names the offending one.
//
// Egress rules follow E2B: `allowOut` wins over `denyOut`; a destination neither names
// is reachable when the sandbox has internet; no internet is `denyOut: ["0.0.0.0/0"]`
// (so `allowOut` still opens what it names). Entries are IPv4 addresses, IPv4 CIDR
// blocks, domain names and `*.`-wildcard domains. What no sandbox reaches whatever its
// rules (the host, private ranges, other sandboxes) is the firewall's (firewall.h), not
// the config's.
//
// Ingress, also E2B's: `allowPublicTraffic: false` makes isoboxd ask requests to the
// sandbox's ports for the sandbox's traffic access token; `maskRequestHost` is the Host a
// sandbox's server sees (`${PORT}` replaced by the port); `httpsPorts` are ports whose
// server speaks TLS, which isoboxd then speaks to them (server/http/proxy.cc).
#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/cidr.h"
#include "net/egress_entry.h"
#include "net/transform_rules.h"

namespace isobox::net {

// Bounds on what one sandbox may ask for (README "Network"): rules are compiled into the
// kernel's firewall and into the proxy's tables, per sandbox.
inline constexpr size_t kMaxEgressEntries = 128;  // in allowOut and in denyOut, each
inline constexpr size_t kMaxHttpsPorts = 32;
inline constexpr size_t kMaxMaskRequestHostLength = 255;  // as given, `${PORT}` included
// Replaced by the port in maskRequestHost (E2B's placeholder).
inline constexpr std::string_view kPortPlaceholder = "${PORT}";
// Ports the agent serves itself over its own socket: never in httpsPorts.
inline constexpr uint16_t kEnvdPort = 49983;
inline constexpr uint16_t kInterpreterPort = 49999;

// `egressProxy`: the user's SOCKS5 proxy, which the sandbox's allowed TCP egress goes
// through (net/socks5.h). The password is kept for the proxy and never answered.
struct EgressTunnel {
  std::string host;  // a DNS name (resolved at each connection) or an IPv4 address
  uint16_t port = 0;
  std::string username;  // empty: no authentication
  std::string password;
  std::string Address() const;  // "host:port", as given back
  bool operator==(const EgressTunnel&) const = default;
};

struct NetworkConfig {
  bool internet = true;  // allow_internet_access
  std::vector<EgressEntry> allow_out;
  std::vector<EgressEntry> deny_out;
  std::vector<DomainRules> rules;  // headers the proxy sets (net/transform_rules.h)
  std::optional<EgressTunnel> egress_proxy;
  // Ingress: set at create, kept by network updates.
  bool allow_public_traffic = true;   // false: requests need the traffic access token
  std::string mask_request_host;      // empty: the client's Host reaches the sandbox
  std::vector<uint16_t> https_ports;  // as given, each once

  bool HasDomains() const;
  // Names need the resolver: internet, or names in allowOut (which wins over the deny-all
  // that no internet is, as E2B documents).
  bool NeedsDns() const;
  // Internet on and no egress rules: the egress a sandbox has unless asked otherwise
  // (ingress options play no part: they are isoboxd's relay's, not the firewall's).
  bool IsDefault() const {
    return internet && allow_out.empty() && deny_out.empty() && rules.empty() && !egress_proxy;
  }
  // What a sandbox without a network (--no-network) can be given: no internet, no rules.
  bool IsLoopbackOnly() const {
    return !internet && allow_out.empty() && deny_out.empty() && rules.empty() && !egress_proxy;
  }
  // Every new web connection (TCP 80 and 443) is the egress proxy's: it must see names
  // (denied names; rules whose headers it sets).
  bool ProxiesAllWeb() const;
  bool IsHttpsPort(unsigned port) const;
  bool operator==(const NetworkConfig&) const = default;
};

// `allow_internet_access` (absent: `default_internet`) and `network` from a create
// body. Options Isobox does not honour yet are refused by name, never dropped.
Result<NetworkConfig> ParseNetworkConfig(const boost::json::object& body, bool default_internet);

// The body of PUT /sandboxes/{id}/network (Sandbox.updateNetwork): the rules it gives
// replace the sandbox's (absent lists: none); `allow_internet_access` absent keeps
// `current`'s. The ingress options are `current`'s: an update that names one is refused.
Result<NetworkConfig> ParseNetworkUpdate(const boost::json::object& body,
                                         const NetworkConfig& current);

// `maskRequestHost` checked: at most kMaxMaskRequestHostLength characters, at most one
// `${PORT}`, and, with the placeholder replaced by any port, a host name (letters, digits,
// hyphens; labels of at most 63) or an IPv4 address, with an optional `:port`.
Status CheckMaskRequestHost(std::string_view mask);
// The Host a request to `port` reaches the sandbox with: `mask` with `${PORT}` replaced by
// the port; empty for an empty mask.
std::string MaskedRequestHost(std::string_view mask, unsigned port);

// The `network` block GET /sandboxes/{id} answers (the SDK's getInfo reads it).
boost::json::object NetworkJson(const NetworkConfig& config);
// The whole config as the store keeps it, and back.
std::string SerializeNetworkConfig(const NetworkConfig& config);
Result<NetworkConfig> DeserializeNetworkConfig(std::string_view text);

}  // namespace isobox::net
