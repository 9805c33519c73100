// One entry of a sandbox's egress rules (`allowOut`, `denyOut`, a `rules` key): an IPv4
// address or CIDR block, a domain name, or a `*.`-wildcard domain.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "net/cidr.h"

namespace isobox::net {

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

// One entry as given; the error names it.
Result<EgressEntry> ParseEgressEntry(std::string_view text);

// Whether `name` (lower case, no trailing dot) matches `entry` (a domain or wildcard).
bool MatchesDomain(const EgressEntry& entry, std::string_view name);

}  // namespace isobox::net
