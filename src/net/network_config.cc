#include "net/network_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <optional>

#include "net/socks5.h"

namespace isobox::net {
namespace {

namespace json = boost::json;

bool IsLabelChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; }

// A host name as DNS carries it: labels of 1-63 letters, digits and hyphens, not
// starting or ending with a hyphen; at least two labels; the last not all digits.
bool IsDomain(std::string_view name) {
  if (name.empty() || name.size() > kMaxDomainLength) return false;
  size_t labels = 0;
  std::string_view last;
  while (!name.empty()) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(), IsLabelChar)) {
      return false;
    }
    ++labels;
    last = label;
    if (dot == std::string_view::npos) break;
    name.remove_prefix(dot + 1);
    if (name.empty()) return false;  // a trailing dot
  }
  bool numeric = std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
  return labels >= 2 && !numeric;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<std::vector<EgressEntry>> ParseEntries(const json::object& network, std::string_view key) {
  std::vector<EgressEntry> out;
  const json::value* list = network.if_contains(key);
  if (list == nullptr || list->is_null()) return out;
  if (!list->is_array()) {
    return MakeError(ErrorCode::kInvalidArgument, "'network.{}' must be an array of strings", key);
  }
  if (list->as_array().size() > kMaxEgressEntries) {
    return MakeError(ErrorCode::kInvalidArgument, "'network.{}' has {} entries; at most {}", key,
                     list->as_array().size(), kMaxEgressEntries);
  }
  for (const json::value& item : list->as_array()) {
    if (!item.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "'network.{}' must be an array of strings",
                       key);
    }
    auto entry = ParseEgressEntry(item.as_string());
    if (!entry) {
      return MakeError(ErrorCode::kInvalidArgument, "'network.{}': {}", key, entry.error().message);
    }
    if (std::find(out.begin(), out.end(), *entry) == out.end()) out.push_back(std::move(*entry));
  }
  return out;
}

// The ingress options: set at create, kept by network updates (E2B's update takes none).
bool IsIngressKey(std::string_view key) {
  return key == "allowPublicTraffic" || key == "maskRequestHost" || key == "httpsPorts";
}

// The `network` fields Isobox does not honour yet: refused by name while absent or at
// their default, so that a request never silently gets less than it asked for.
Status RefuseUnsupported(const json::object& network, bool update) {
  for (const auto& [key, value] : network) {
    if (key == "allowOut" || key == "denyOut" || value.is_null()) continue;
    if (update && (key == "allow_internet_access" || key == "allowInternetAccess")) continue;
    if (!update && IsIngressKey(key)) continue;
    if (update && IsIngressKey(key)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}' cannot be changed on a running sandbox (it is set at create)",
                       std::string_view(key));
    }
    if (key == "rules" || key == "egressProxy") continue;
    return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}{}'", update ? "" : "network.",
                     std::string_view(key));
  }
  return Ok();
}

// `egressProxy` ({address, username?, password?}; null: none). Whether the address may be
// reached is the daemon's to check (control/sandbox_network.h): it resolves it.
Result<std::optional<EgressTunnel>> ParseEgressTunnel(const json::object& object,
                                                      std::string_view where) {
  const json::value* value = object.if_contains("egressProxy");
  if (value == nullptr || value->is_null()) return std::nullopt;
  if (!value->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' must be an object {{address, username, password}}", where);
  }
  EgressTunnel tunnel;
  std::optional<std::string> address;
  for (const auto& [key, field] : value->as_object()) {
    if (field.is_null()) continue;
    if (!field.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}.{}' must be a string", where,
                       std::string_view(key));
    }
    std::string text(field.as_string());
    if (key == "address") {
      address = std::move(text);
    } else if (key == "username") {
      tunnel.username = std::move(text);
    } else if (key == "password") {
      tunnel.password = std::move(text);
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}.{}'", where,
                       std::string_view(key));
    }
  }
  if (!address) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}.address' (host:port) is required", where);
  }
  auto parsed = ParseProxyAddress(*address);
  if (!parsed) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}.address': {}", where,
                     parsed.error().message);
  }
  std::tie(tunnel.host, tunnel.port) = *parsed;
  if (auto checked = CheckSocks5Credentials(tunnel.username, tunnel.password); !checked) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}': {}", where, checked.error().message);
  }
  return tunnel;
}

Result<bool> ParsePublicTraffic(const json::object& network) {
  const json::value* value = network.if_contains("allowPublicTraffic");
  if (value == nullptr || value->is_null()) return true;
  if (!value->is_bool()) {
    return MakeError(ErrorCode::kInvalidArgument, "'network.allowPublicTraffic' must be a boolean");
  }
  return value->as_bool();
}

// `httpsPorts`: distinct ports 1-65535, at most kMaxHttpsPorts, none of the agent's own.
Result<std::vector<uint16_t>> ParseHttpsPorts(const json::object& network) {
  std::vector<uint16_t> out;
  const json::value* list = network.if_contains("httpsPorts");
  if (list == nullptr || list->is_null()) return out;
  if (!list->is_array()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'network.httpsPorts' must be an array of port numbers");
  }
  if (list->as_array().size() > kMaxHttpsPorts) {
    return MakeError(ErrorCode::kInvalidArgument, "'network.httpsPorts' has {} ports; at most {}",
                     list->as_array().size(), kMaxHttpsPorts);
  }
  for (const json::value& item : list->as_array()) {
    std::optional<int64_t> number;
    if (item.is_int64()) number = item.as_int64();
    if (item.is_uint64())
      number = static_cast<int64_t>(std::min<uint64_t>(item.as_uint64(), 1 << 20));
    if (!number) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'network.httpsPorts' must be an array of port numbers");
    }
    if (*number < 1 || *number > 65535) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'network.httpsPorts': {} is not a port (1-65535)", *number);
    }
    auto port = static_cast<uint16_t>(*number);
    if (port == kEnvdPort || port == kInterpreterPort) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'network.httpsPorts': {} is the sandbox agent's own port (envd "
                       "49983, code interpreter 49999), which isoboxd reaches itself",
                       port);
    }
    if (std::find(out.begin(), out.end(), port) != out.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "'network.httpsPorts': {} is listed twice",
                       port);
    }
    out.push_back(port);
  }
  return out;
}

Result<std::string> ParseMaskRequestHost(const json::object& network) {
  const json::value* value = network.if_contains("maskRequestHost");
  if (value == nullptr || value->is_null()) return std::string();
  if (!value->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "'network.maskRequestHost' must be a string");
  }
  std::string_view mask = value->as_string();
  if (mask.empty()) return std::string();  // as absent: the client's Host passes
  RETURN_IF_ERROR(CheckMaskRequestHost(mask));
  return std::string(mask);
}

// Copies the ingress options of `network` (a create's) into `config`.
Status ParseIngress(const json::object& network, NetworkConfig& config) {
  ASSIGN_OR_RETURN(config.allow_public_traffic, ParsePublicTraffic(network));
  ASSIGN_OR_RETURN(config.mask_request_host, ParseMaskRequestHost(network));
  ASSIGN_OR_RETURN(config.https_ports, ParseHttpsPorts(network));
  return Ok();
}

// A host name as a Host header may carry it: labels of 1-63 letters, digits and hyphens,
// not starting or ending with a hyphen; one label will do ("localhost"); the last not all
// digits (that would be an address, checked as one).
bool IsHostName(std::string_view name) {
  if (name.empty() || name.size() > kMaxDomainLength) return false;
  std::string_view last;
  while (true) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(), IsLabelChar)) {
      return false;
    }
    last = label;
    if (dot == std::string_view::npos) break;
    name.remove_prefix(dot + 1);
  }
  return !std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsPortText(std::string_view text) {
  if (text.empty() || text.size() > 5 || text.front() == '0') return false;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return std::stoul(std::string(text)) <= 65535;
}

json::array EntriesJson(const std::vector<EgressEntry>& entries) {
  json::array out;
  for (const EgressEntry& entry : entries) out.emplace_back(entry.text);
  return out;
}

}  // namespace

bool NetworkConfig::HasDomains() const {
  auto is_domain = [](const EgressEntry& e) { return e.kind != EgressEntry::Kind::kCidr; };
  return std::any_of(allow_out.begin(), allow_out.end(), is_domain) ||
         std::any_of(deny_out.begin(), deny_out.end(), is_domain);
}

std::string EgressTunnel::Address() const { return fmt::format("{}:{}", host, port); }

bool NetworkConfig::ProxiesAllWeb() const {
  return !rules.empty() || std::any_of(deny_out.begin(), deny_out.end(), [](const EgressEntry& e) {
    return e.kind != EgressEntry::Kind::kCidr;
  });
}

bool NetworkConfig::IsHttpsPort(unsigned port) const {
  return std::find(https_ports.begin(), https_ports.end(), port) != https_ports.end();
}

Status CheckMaskRequestHost(std::string_view mask) {
  if (mask.size() > kMaxMaskRequestHostLength) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'network.maskRequestHost' has {} characters; at most {}", mask.size(),
                     kMaxMaskRequestHostLength);
  }
  size_t placeholder = mask.find(kPortPlaceholder);
  if (placeholder != std::string_view::npos &&
      mask.find(kPortPlaceholder, placeholder + 1) != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'network.maskRequestHost' '{}' has more than one ${{PORT}}", mask);
  }
  // The longest port stands in for any: what is valid with it is valid with every port.
  std::string host = MaskedRequestHost(mask, 65535);
  std::string_view name = host;
  size_t colon = name.rfind(':');
  bool valid = true;
  if (colon != std::string_view::npos) {
    valid = IsPortText(name.substr(colon + 1));
    name = name.substr(0, colon);
  }
  bool looks_numeric = std::all_of(name.begin(), name.end(),
                                   [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  valid = valid && (looks_numeric ? ParseIpv4(name).has_value() : IsHostName(name));
  if (!valid) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'network.maskRequestHost' '{}' is not a host name or IPv4 address with an "
                     "optional :port (${{PORT}} stands for the port)",
                     mask);
  }
  return Ok();
}

std::string MaskedRequestHost(std::string_view mask, unsigned port) {
  std::string out(mask);
  size_t at = out.find(kPortPlaceholder);
  if (at != std::string::npos) out.replace(at, kPortPlaceholder.size(), std::to_string(port));
  return out;
}

bool NetworkConfig::NeedsDns() const {
  return internet || std::any_of(allow_out.begin(), allow_out.end(), [](const EgressEntry& e) {
           return e.kind != EgressEntry::Kind::kCidr;
         });
}

Result<EgressEntry> ParseEgressEntry(std::string_view text) {
  EgressEntry entry;
  entry.text = Lower(text);
  std::string_view name = entry.text;
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "an entry is empty");
  if (name.find(':') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}': IPv6 is not routed from sandboxes (no IPv6 entry is needed or "
                     "honoured)",
                     text);
  }
  bool looks_numeric = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '/';
  });
  if (looks_numeric) {
    auto cidr = ParseCidr(name);
    if (!cidr) return tl::unexpected(cidr.error());
    entry.cidr = *cidr;
    entry.text = cidr->prefix == 32 ? FormatIpv4(cidr->address) : cidr->ToString();
    return entry;
  }
  if (name.starts_with("*.")) {
    entry.kind = EgressEntry::Kind::kWildcardDomain;
    entry.domain = std::string(name.substr(2));
  } else {
    entry.kind = EgressEntry::Kind::kDomain;
    entry.domain = std::string(name);
  }
  if (!IsDomain(entry.domain)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' is neither an IPv4 address, a CIDR block, a domain name nor a "
                     "'*.'-wildcard domain",
                     text);
  }
  return entry;
}

namespace {

// `allow_internet_access` as the SDKs send it; `allowInternetAccess` as E2B's API also
// takes it (PUT /sandboxes/{id}/network documents the camel-case name).
Result<bool> ParseInternet(const json::object& body, bool otherwise) {
  std::optional<bool> found;
  for (const char* name : {"allow_internet_access", "allowInternetAccess"}) {
    const json::value* internet = body.if_contains(name);
    if (internet == nullptr || internet->is_null()) continue;
    if (!internet->is_bool()) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a boolean", name);
    }
    if (found && *found != internet->as_bool()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'allow_internet_access' and 'allowInternetAccess' disagree");
    }
    found = internet->as_bool();
  }
  return found.value_or(otherwise);
}

}  // namespace

Result<NetworkConfig> ParseNetworkUpdate(const json::object& body, const NetworkConfig& current) {
  NetworkConfig config;
  config.allow_public_traffic = current.allow_public_traffic;
  config.mask_request_host = current.mask_request_host;
  config.https_ports = current.https_ports;
  ASSIGN_OR_RETURN(config.internet, ParseInternet(body, current.internet));
  RETURN_IF_ERROR(RefuseUnsupported(body, /*update=*/true));
  ASSIGN_OR_RETURN(config.allow_out, ParseEntries(body, "allowOut"));
  ASSIGN_OR_RETURN(config.deny_out, ParseEntries(body, "denyOut"));
  ASSIGN_OR_RETURN(config.rules, ParseTransformRules(body.if_contains("rules"), "rules"));
  ASSIGN_OR_RETURN(config.egress_proxy, ParseEgressTunnel(body, "egressProxy"));
  return config;
}

Result<NetworkConfig> ParseNetworkConfig(const json::object& body, bool default_internet) {
  NetworkConfig config;
  ASSIGN_OR_RETURN(config.internet, ParseInternet(body, default_internet));
  const json::value* network = body.if_contains("network");
  if (network == nullptr || network->is_null()) return config;
  if (!network->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "'network' must be an object");
  }
  RETURN_IF_ERROR(RefuseUnsupported(network->as_object(), /*update=*/false));
  ASSIGN_OR_RETURN(config.allow_out, ParseEntries(network->as_object(), "allowOut"));
  ASSIGN_OR_RETURN(config.deny_out, ParseEntries(network->as_object(), "denyOut"));
  ASSIGN_OR_RETURN(config.rules,
                   ParseTransformRules(network->as_object().if_contains("rules"), "network.rules"));
  ASSIGN_OR_RETURN(config.egress_proxy,
                   ParseEgressTunnel(network->as_object(), "network.egressProxy"));
  RETURN_IF_ERROR(ParseIngress(network->as_object(), config));
  return config;
}

namespace {

// The `network` block; `redact`: header values hidden (answers), else whole (the store).
json::object ToJson(const NetworkConfig& config, bool redact) {
  json::object out{{"allowOut", EntriesJson(config.allow_out)},
                   {"denyOut", EntriesJson(config.deny_out)},
                   {"allowPublicTraffic", config.allow_public_traffic}};
  if (!config.mask_request_host.empty()) out["maskRequestHost"] = config.mask_request_host;
  if (!config.https_ports.empty()) {
    json::array ports;
    for (uint16_t port : config.https_ports) ports.emplace_back(port);
    out["httpsPorts"] = std::move(ports);
  }
  if (!config.rules.empty()) out["rules"] = TransformRulesJson(config.rules, redact);
  if (config.egress_proxy) {
    // SECURITY: the password is never answered (E2B's getInfo shows address and username).
    json::object tunnel{{"address", config.egress_proxy->Address()}};
    if (!config.egress_proxy->username.empty()) {
      tunnel["username"] = config.egress_proxy->username;
    }
    if (!redact && !config.egress_proxy->password.empty()) {
      tunnel["password"] = config.egress_proxy->password;
    }
    out["egressProxy"] = std::move(tunnel);
  }
  return out;
}

}  // namespace

json::object NetworkJson(const NetworkConfig& config) { return ToJson(config, /*redact=*/true); }

std::string SerializeNetworkConfig(const NetworkConfig& config) {
  json::object out = ToJson(config, /*redact=*/false);
  return json::serialize(
      json::object{{"allow_internet_access", config.internet}, {"network", std::move(out)}});
}

Result<NetworkConfig> DeserializeNetworkConfig(std::string_view text) {
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) {
    return MakeError(ErrorCode::kDataLoss, "a stored network configuration is not JSON");
  }
  return ParseNetworkConfig(parsed.as_object(), true);
}

}  // namespace isobox::net
