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

namespace isobox::net {

// Bounds on what one sandbox may ask for (README "Network"): rules are compiled into the
// kernel's firewall and into the proxy's tables, per sandbox.
inline constexpr size_t kMaxEgressEntries = 128;  // in allowOut and in denyOut, each
inline constexpr size_t kMaxDomainLength = 253;

struct EgressEntry {
  enum class Kind { kCidr, kDomain, kWildcardDomain };
  Kind kind = Kind::kCidr;
  Ipv4Cidr cidr;       // kCidr
  std::string domain;  // kDomain: "api.example.com"; kWildcardDomain: "example.com" for
                       // "*.example.com" (which matches subdomains, not example.com itself)
  std::string text;    // as given (normalised: lower case)

  bool operator==(const EgressEntry&) const = default;
};

struct NetworkConfig {
  bool internet = true;  // allow_internet_access
  std::vector<EgressEntry> allow_out;
  std::vector<EgressEntry> deny_out;

  bool HasDomains() const;
  // Names need the resolver: internet, or names in allowOut (which wins over the deny-all
  // that no internet is, as E2B documents).
  bool NeedsDns() const;
  // Internet on and no rules: what a sandbox has unless asked otherwise.
  bool IsDefault() const { return internet && allow_out.empty() && deny_out.empty(); }
  bool operator==(const NetworkConfig&) const = default;
};

// One entry of allowOut/denyOut.
Result<EgressEntry> ParseEgressEntry(std::string_view text);

// `allow_internet_access` (absent: `default_internet`) and `network` from a create
// body. Options Isobox does not honour yet are refused by name, never dropped.
Result<NetworkConfig> ParseNetworkConfig(const boost::json::object& body, bool default_internet);

// The body of PUT /sandboxes/{id}/network (Sandbox.updateNetwork): the rules it gives
// replace the sandbox's (absent lists: none); `allow_internet_access` absent keeps
// `current`'s.
Result<NetworkConfig> ParseNetworkUpdate(const boost::json::object& body,
                                         const NetworkConfig& current);

// The `network` block GET /sandboxes/{id} answers (the SDK's getInfo reads it).
boost::json::object NetworkJson(const NetworkConfig& config);
// The whole config as the store keeps it, and back.
std::string SerializeNetworkConfig(const NetworkConfig& config);
Result<NetworkConfig> DeserializeNetworkConfig(std::string_view text);

}  // namespace isobox::net
