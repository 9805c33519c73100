// Secrets added at the edge (README "Network"): E2B's `network.rules`, a map from a domain
// (or a `*.`-wildcard) to an ordered list of rules whose `transform.headers` the egress
// proxy (net/egress_proxy.h) sets on the sandbox's HTTP requests to that domain, over
// plain HTTP and over HTTPS (intercepted, net/intercept.h). Values may name stored secrets
// (`${e2b.secrets.<name>}`, the SDK's `Secret.fill`), filled in by the proxy when it
// connects, so a secret's value never enters the sandbox or the sandbox's configuration.
//
// Matching, as E2B documents it: an exact key wins, else the longest matching wildcard;
// the rules of one key are applied in order (a later rule's header replaces an earlier
// one of the same name); rule sets of several keys are never merged. Rules grant no
// access: the destination must be allowed by allowOut/denyOut too.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/egress_entry.h"
#include "net/http_rewrite.h"

namespace isobox::net {

// Bounds on one sandbox's rules (README "Network").
inline constexpr size_t kMaxRuleDomains = 64;
inline constexpr size_t kMaxRulesPerDomain = 8;
inline constexpr size_t kMaxHeadersPerRule = 32;
// Shown by GET /sandboxes/{id} in place of every header value.
inline constexpr std::string_view kRedactedValue = "[redacted]";

// A rule's header: its value is literal text and `${e2b.secrets.<name>}` placeholders
// (HeaderInjection: net/http_rewrite.h).
struct DomainRules {
  EgressEntry match;  // kDomain or kWildcardDomain
  // The rules' headers flattened in order: a later one replaces an earlier of the same
  // name (case-insensitive), as the proxy applies them.
  std::vector<HeaderInjection> headers;
  bool operator==(const DomainRules&) const = default;
};

// `rules` of a create or update (`where` names it in errors: "network.rules" / "rules").
// null or absent: none.
Result<std::vector<DomainRules>> ParseTransformRules(const boost::json::value* rules,
                                                     std::string_view where);

// The rules for `name` (lower case): the exact key, else the longest wildcard; nullptr
// when none matches.
const DomainRules* RulesFor(const std::vector<DomainRules>& rules, std::string_view name);

// The secrets `value` names, in order (duplicates kept).
std::vector<std::string> SecretNamesIn(std::string_view value);

// `headers` with every placeholder replaced by `resolve(name)`; the first error stops.
using ResolveSecret = std::function<Result<std::string>(std::string_view name)>;
Result<std::vector<HeaderInjection>> FillSecrets(const std::vector<HeaderInjection>& headers,
                                                 const ResolveSecret& resolve);

// The `rules` object, one rule per key holding the flattened headers: with `redact`,
// every value is kRedactedValue (what GET /sandboxes/{id} answers); without, as given
// (what the store keeps).
boost::json::object TransformRulesJson(const std::vector<DomainRules>& rules, bool redact);

}  // namespace isobox::net
