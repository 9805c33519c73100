#include "net/firewall_rules.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <set>
#include <utility>

#include "net/firewall_chains.h"

namespace isobox::net {
namespace {

// Ranges no sandbox reaches (issue 19 point 2). 198.51.100.0/24, 203.0.113.0/24 and
// 192.0.2.0/24 (TEST-NET) are public on purpose: the tests' fake internet lives there.
constexpr struct {
  uint32_t address;
  int prefix;
} kSpecialRanges[] = {
    {0x00000000, 8},   // 0.0.0.0/8 "this network"
    {0x0a000000, 8},   // 10.0.0.0/8 RFC 1918
    {0x64400000, 10},  // 100.64.0.0/10 CGNAT
    {0x7f000000, 8},   // 127.0.0.0/8 loopback
    {0xa9fe0000, 16},  // 169.254.0.0/16 link-local, cloud metadata 169.254.169.254
    {0xac100000, 12},  // 172.16.0.0/12 RFC 1918
    {0xc0000000, 24},  // 192.0.0.0/24 IETF protocol assignments
    {0xc0a80000, 16},  // 192.168.0.0/16 RFC 1918
    {0xc6120000, 15},  // 198.18.0.0/15 benchmarking
    {0xe0000000, 4},   // 224.0.0.0/4 multicast
    {0xf0000000, 4},   // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
};

// Inclusive [first, last], 64-bit so that last + 1 never wraps.
using Range = std::pair<uint64_t, uint64_t>;

Range ToRange(const Ipv4Cidr& cidr) { return {cidr.First(), cidr.Last()}; }

std::vector<Range> Subtract(const std::vector<Range>& from, const Range& hole) {
  std::vector<Range> out;
  for (const auto& [first, last] : from) {
    if (hole.second < first || hole.first > last) {
      out.emplace_back(first, last);
      continue;
    }
    if (first < hole.first) out.emplace_back(first, hole.first - 1);
    if (hole.second < last) out.emplace_back(hole.second + 1, last);
  }
  return out;
}

std::vector<Range> Merge(std::vector<Range> ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<Range> out;
  for (const auto& range : ranges) {
    if (!out.empty() && range.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, range.second);
    } else {
      out.push_back(range);
    }
  }
  return out;
}

// The fewest CIDR blocks that cover [first, last] exactly.
void AppendBlocks(Range range, std::vector<Ipv4Cidr>& out) {
  uint64_t start = range.first;
  while (start <= range.second) {
    int prefix = 32;
    while (prefix > 0) {
      uint64_t size = uint64_t{1} << (32 - (prefix - 1));
      if (start % size != 0 || start + size - 1 > range.second) break;
      --prefix;
    }
    out.push_back(Ipv4Cidr{static_cast<uint32_t>(start), prefix});
    start += uint64_t{1} << (32 - prefix);
  }
}

bool ValidTableName(const std::string& name) {
  if (name.empty() || name.size() > 32 || name[0] < 'a' || name[0] > 'z') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

Status ValidatePorts(const std::vector<uint16_t>& ports, std::string_view what) {
  if (ports.size() > kMaxGatewayPorts) {
    return MakeError(ErrorCode::kInvalidArgument, "{} gateway ports: at most {} are allowed",
                     ports.size(), kMaxGatewayPorts);
  }
  for (uint16_t port : ports) {
    if (port == 0) return MakeError(ErrorCode::kInvalidArgument, "{} gateway port 0", what);
  }
  return Ok();
}

Status ValidateList(const std::vector<Ipv4Cidr>& list, std::string_view what) {
  if (list.size() > kMaxCidrsPerList) {
    return MakeError(ErrorCode::kInvalidArgument, "{} has {} entries: at most {} are allowed", what,
                     list.size(), kMaxCidrsPerList);
  }
  for (const auto& cidr : list) {
    if (cidr.prefix < 0 || cidr.prefix > 32 || (cidr.address & cidr.Mask()) != cidr.address) {
      return MakeError(ErrorCode::kInvalidArgument, "{} entry {} is not a CIDR block", what,
                       cidr.ToString());
    }
  }
  return Ok();
}

// `add element` / `delete element` commands, one per set, in set order.
std::string RenderElements(std::string_view verb, const std::string& table,
                           const std::vector<FirewallElement>& elements, bool with_values) {
  std::map<std::string, std::vector<std::string>> by_set;
  for (const auto& element : elements) {
    by_set[element.set].push_back(with_values && !element.value.empty()
                                      ? fmt::format("{} : {}", element.key, element.value)
                                      : element.key);
  }
  std::string out;
  for (const auto& [set, items] : by_set) {
    out +=
        fmt::format("{} element inet {} {} {{ {} }}\n", verb, table, set, fmt::join(items, ", "));
  }
  return out;
}

uint64_t JsonU64(const boost::json::object& object, std::string_view key) {
  const boost::json::value* value = object.if_contains(key);
  if (value == nullptr) return 0;
  if (value->is_uint64()) return value->as_uint64();
  if (value->is_int64() && value->as_int64() >= 0) return value->as_int64();
  return 0;
}

}  // namespace

Status ValidateFirewallConfig(const FirewallConfig& config) {
  if (!ValidTableName(config.table)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "firewall table name '{}': must be [a-z][a-z0-9_]*, at most 32 characters",
                     config.table);
  }
  const Ipv4Cidr& block = config.sandbox_cidr;
  if (block.prefix > 30 || block.prefix < 8 || (block.address & block.Mask()) != block.address) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sandbox block {}: must be a CIDR block of prefix 8 to 30", block.ToString());
  }
  if (!block.Contains(config.gateway) || config.gateway == block.First() ||
      config.gateway == block.Last()) {
    return MakeError(ErrorCode::kInvalidArgument, "gateway {} is not a host address of {}",
                     FormatIpv4(config.gateway), block.ToString());
  }
  if (config.allowed_private.size() > kMaxAllowedPrivate) {
    return MakeError(ErrorCode::kInvalidArgument, "{} allowed private blocks: at most {}",
                     config.allowed_private.size(), kMaxAllowedPrivate);
  }
  if (config.max_connections == 0 || config.max_connections > kMaxMaxConnections) {
    return MakeError(ErrorCode::kInvalidArgument, "{} connections per sandbox: must be 1 to {}",
                     config.max_connections, kMaxMaxConnections);
  }
  RETURN_IF_ERROR(ValidatePorts(config.gateway_udp_ports, "UDP"));
  RETURN_IF_ERROR(ValidatePorts(config.gateway_tcp_ports, "TCP"));
  return Ok();
}

Status ValidateSandboxPolicy(const FirewallConfig& config, const SandboxPolicy& policy) {
  const Ipv4Cidr& block = config.sandbox_cidr;
  if (!block.Contains(policy.address) || policy.address == block.First() ||
      policy.address == block.Last() || policy.address == config.gateway) {
    return MakeError(ErrorCode::kInvalidArgument, "{} is not a sandbox address of {}",
                     FormatIpv4(policy.address), block.ToString());
  }
  // SECURITY: the chains catch sandbox traffic by the "ib" prefix of its link; a link
  // named otherwise would be forwarded without any of these checks.
  const std::string& link = policy.host_link;
  bool link_ok = link.size() > 2 && link.size() <= 15 && link.starts_with("ib") &&
                 std::all_of(link.begin(), link.end(), [](char c) {
                   return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                 });
  if (!link_ok) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sandbox link '{}': must be \"ib\" and lowercase letters or digits, at "
                     "most 15 characters",
                     link);
  }
  RETURN_IF_ERROR(ValidateList(policy.allow_out, "allowOut"));
  RETURN_IF_ERROR(ValidateList(policy.deny_out, "denyOut"));
  if ((policy.proxy_all_web || policy.tunnel_all_tcp) && !policy.web_proxy_port) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "proxy_all_web and tunnel_all_tcp need a web proxy port");
  }
  if (policy.web_proxy_port &&
      std::find(config.gateway_tcp_ports.begin(), config.gateway_tcp_ports.end(),
                *policy.web_proxy_port) == config.gateway_tcp_ports.end()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "web proxy port {} is not one of the gateway's TCP ports",
                     *policy.web_proxy_port);
  }
  return Ok();
}

std::vector<std::string> LinkNamePatterns(const Ipv4Cidr& block) {
  std::string hex = fmt::format("{:08x}", block.address);
  size_t fixed = static_cast<size_t>(block.prefix) / 4;
  int free_bits = (4 - block.prefix % 4) % 4;
  std::vector<std::string> patterns;
  if (free_bits == 0) {
    patterns.push_back("ib" + hex.substr(0, fixed) + "*");
    return patterns;
  }
  unsigned first = static_cast<unsigned>(block.address >> (28 - 4 * fixed)) & 0xf;
  for (unsigned digit = first; digit < first + (1u << free_bits); ++digit) {
    patterns.push_back(fmt::format("ib{}{:x}*", hex.substr(0, fixed), digit));
  }
  return patterns;
}

std::vector<Ipv4Cidr> UnreachableBlocks(const FirewallConfig& config) {
  std::vector<Range> ranges;
  for (const auto& special : kSpecialRanges) {
    ranges.push_back(ToRange(Ipv4Cidr{special.address, special.prefix}));
  }
  for (const auto& allowed : config.allowed_private) ranges = Subtract(ranges, ToRange(allowed));
  // SECURITY: other sandboxes stay unreachable whatever the operator opened.
  ranges.push_back(ToRange(config.sandbox_cidr));
  std::vector<Ipv4Cidr> blocks;
  for (const auto& range : Merge(std::move(ranges))) AppendBlocks(range, blocks);
  return blocks;
}

std::vector<Ipv4Cidr> ExpandToStrides(const std::vector<Ipv4Cidr>& cidrs) {
  std::set<std::pair<int, uint32_t>> out;
  for (const auto& cidr : cidrs) {
    int prefix = (cidr.prefix + kPrefixStride - 1) / kPrefixStride * kPrefixStride;
    uint64_t count = uint64_t{1} << (prefix - cidr.prefix);
    uint64_t step = uint64_t{1} << (32 - prefix);
    for (uint64_t i = 0; i < count; ++i) {
      out.emplace(prefix, static_cast<uint32_t>(cidr.address + i * step));
    }
  }
  std::vector<Ipv4Cidr> blocks;
  for (const auto& [prefix, address] : out) blocks.push_back(Ipv4Cidr{address, prefix});
  return blocks;
}

std::vector<FirewallElement> SandboxElements(const FirewallConfig& config,
                                             const SandboxPolicy& policy) {
  std::string address = FormatIpv4(policy.address);
  std::string link = fmt::format("\"{}\"", policy.host_link);
  std::vector<FirewallElement> elements = {
      {"links", fmt::format("{} . {}", link, address), ""},
      {"egress", link, ""},
      {"denied", link, ""},
      {"refused", link, ""},
  };
  if (!policy.internet) {
    elements.push_back({"offline", address, ""});
  } else {
    if (!policy.allow_out.empty() || !policy.deny_out.empty() || policy.proxy_all_web) {
      elements.push_back({"ruled", address, ""});
    }
    if (policy.proxy_all_web) elements.push_back({"web_all", address, ""});
    if (policy.tunnel_all_tcp) elements.push_back({"tunnel_all", address, ""});
    for (auto [list, cidrs] : {std::pair{"allow", &policy.allow_out}, {"deny", &policy.deny_out}}) {
      for (const auto& block : ExpandToStrides(*cidrs)) {
        elements.push_back({SetName(list, block.prefix),
                            fmt::format("{} . {}", address, FormatIpv4(block.address)), ""});
      }
    }
    if (policy.web_proxy_port) {
      elements.push_back(
          {"web_proxy", address,
           fmt::format("{} . {}", FormatIpv4(config.gateway), *policy.web_proxy_port)});
    }
  }
  std::sort(elements.begin(), elements.end());
  return elements;
}

std::string RenderInstall(const FirewallConfig& config, const std::vector<SandboxPolicy>& live,
                          const CarriedCounters& carried) {
  const std::string& table = config.table;
  // "table" first so that "delete table" never fails: both in one transaction, so the
  // kernel swaps the old table for the new one atomically.
  std::string out =
      fmt::format("table inet {0}\ndelete table inet {0}\ntable inet {0} {{\n", table);
  AppendTableBody(config, out);
  out += "}\n";
  std::vector<FirewallElement> elements;
  for (const auto& policy : live) {
    auto own = SandboxElements(config, policy);
    for (auto& element : own) {
      const auto& counters = element.set == "egress"    ? carried.egress
                             : element.set == "denied"  ? carried.denied
                             : element.set == "refused" ? carried.refused
                                                        : std::map<std::string, CounterValues>{};
      auto found = counters.find(policy.host_link);
      if (found == counters.end()) continue;
      element.key +=
          fmt::format(" counter packets {} bytes {}", found->second.packets, found->second.bytes);
    }
    elements.insert(elements.end(), own.begin(), own.end());
  }
  out += RenderElements("add", table, elements, true);
  return out;
}

std::string RenderApply(const FirewallConfig& config, const SandboxPolicy* previous,
                        const SandboxPolicy& next) {
  std::vector<FirewallElement> old_elements;
  if (previous != nullptr) old_elements = SandboxElements(config, *previous);
  std::vector<FirewallElement> new_elements = SandboxElements(config, next);
  std::vector<FirewallElement> removed, added;
  std::set_difference(old_elements.begin(), old_elements.end(), new_elements.begin(),
                      new_elements.end(), std::back_inserter(removed));
  std::set_difference(new_elements.begin(), new_elements.end(), old_elements.begin(),
                      old_elements.end(), std::back_inserter(added));
  // Deletions first: a map key whose value changes is deleted, then added again.
  return RenderElements("delete", config.table, removed, false) +
         RenderElements("add", config.table, added, true);
}

std::string RenderRemove(const FirewallConfig& config, const SandboxPolicy& applied) {
  return RenderElements("delete", config.table, SandboxElements(config, applied), false);
}

std::string RenderUninstall(const std::string& table) {
  return fmt::format("table inet {0}\ndelete table inet {0}\n", table);
}

Result<std::map<std::string, CounterValues>> ParseCounterListing(std::string_view json) {
  boost::system::error_code error;
  boost::json::value root = boost::json::parse(json, error);
  if (error || !root.is_object()) {
    return MakeError(ErrorCode::kInternal, "nftables counters: unreadable JSON ({} bytes)",
                     json.size());
  }
  std::map<std::string, CounterValues> out;
  const boost::json::value* items = root.as_object().if_contains("nftables");
  if (items == nullptr || !items->is_array()) return out;
  for (const auto& item : items->as_array()) {
    const boost::json::value* set =
        item.is_object() ? item.as_object().if_contains("set") : nullptr;
    if (set == nullptr || !set->is_object()) continue;
    const boost::json::value* elements = set->as_object().if_contains("elem");
    if (elements == nullptr || !elements->is_array()) continue;
    for (const auto& wrapped : elements->as_array()) {
      const boost::json::value* element =
          wrapped.is_object() ? wrapped.as_object().if_contains("elem") : nullptr;
      if (element == nullptr || !element->is_object()) continue;
      const boost::json::value* name = element->as_object().if_contains("val");
      const boost::json::value* counter = element->as_object().if_contains("counter");
      if (name == nullptr || !name->is_string() || counter == nullptr || !counter->is_object()) {
        continue;
      }
      out[std::string(name->as_string())] = {JsonU64(counter->as_object(), "packets"),
                                             JsonU64(counter->as_object(), "bytes")};
    }
  }
  return out;
}

}  // namespace isobox::net
