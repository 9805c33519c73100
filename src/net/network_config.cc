#include "net/network_config.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <optional>

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

// The `network` fields Isobox does not honour yet: refused by name while absent or at
// their default, so that a request never silently gets less than it asked for.
Status RefuseUnsupported(const json::object& network, bool update) {
  for (const auto& [key, value] : network) {
    if (key == "allowOut" || key == "denyOut" || value.is_null()) continue;
    if (update && (key == "allow_internet_access" || key == "allowInternetAccess")) continue;
    if (key == "allowPublicTraffic" && value.is_bool() && value.as_bool()) continue;
    if ((key == "rules" && value.is_object() && value.as_object().empty()) ||
        (key == "httpsPorts" && value.is_array() && value.as_array().empty())) {
      continue;
    }
    if (key == "rules" || key == "egressProxy" || key == "allowPublicTraffic" ||
        key == "maskRequestHost" || key == "httpsPorts") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}{}' is not supported by this Isobox version (README "
                       "\"Network\" lists what is)",
                       update ? "" : "network.", std::string_view(key));
    }
    return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}{}'", update ? "" : "network.",
                     std::string_view(key));
  }
  return Ok();
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
  ASSIGN_OR_RETURN(config.internet, ParseInternet(body, current.internet));
  RETURN_IF_ERROR(RefuseUnsupported(body, /*update=*/true));
  ASSIGN_OR_RETURN(config.allow_out, ParseEntries(body, "allowOut"));
  ASSIGN_OR_RETURN(config.deny_out, ParseEntries(body, "denyOut"));
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
  return config;
}

json::object NetworkJson(const NetworkConfig& config) {
  return json::object{{"allowOut", EntriesJson(config.allow_out)},
                      {"denyOut", EntriesJson(config.deny_out)},
                      {"allowPublicTraffic", true}};
}

std::string SerializeNetworkConfig(const NetworkConfig& config) {
  json::object out = NetworkJson(config);
  out.erase("allowPublicTraffic");
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
