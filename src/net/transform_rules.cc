#include "net/transform_rules.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cctype>

namespace isobox::net {
namespace {

namespace json = boost::json;

constexpr std::string_view kSecretPrefix = "${e2b.secrets.";
constexpr std::string_view kPlaceholderStart = "${e2b.";
constexpr std::string_view kIdentityPrefix = "${e2b.identity.";

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool IsSecretNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}

// Each placeholder of `value`: calls `on_secret(name)` for `${e2b.secrets.<name>}`;
// refuses other `${e2b.` placeholders (identity tokens are not honoured).
Status ForEachPlaceholder(
    std::string_view header, std::string_view value,
    const std::function<void(size_t at, size_t size, std::string_view)>& on_secret) {
  size_t at = 0;
  while ((at = value.find(kPlaceholderStart, at)) != std::string_view::npos) {
    if (value.substr(at).starts_with(kIdentityPrefix)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "header '{}': workload identity tokens (${{e2b.identity...}}) are not "
                       "supported by Isobox; store the value with Secret.create and use "
                       "Secret.fill",
                       header);
    }
    if (!value.substr(at).starts_with(kSecretPrefix)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "header '{}': unknown placeholder at '{}' (only ${{e2b.secrets.<name>}})",
                       header, value.substr(at, 24));
    }
    size_t name_at = at + kSecretPrefix.size();
    size_t end = value.find('}', name_at);
    std::string_view name =
        end == std::string_view::npos ? std::string_view() : value.substr(name_at, end - name_at);
    if (name.empty() || name.size() > 128 ||
        !std::all_of(name.begin(), name.end(), IsSecretNameChar)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "header '{}': '${{e2b.secrets.' must be followed by a secret name "
                       "(letters, digits, '_', '-', '.') and '}}'",
                       header);
    }
    on_secret(at, end + 1 - at, name);
    at = end + 1;
  }
  return Ok();
}

Result<std::vector<HeaderInjection>> ParseHeaders(const json::value& transform,
                                                  std::string_view where) {
  std::vector<HeaderInjection> out;
  if (transform.is_null()) return out;
  if (!transform.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}.transform' must be an object", where);
  }
  for (const auto& [key, value] : transform.as_object()) {
    if (key != "headers") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}.transform.{}' is not supported (only 'headers')", where,
                       std::string_view(key));
    }
    if (value.is_null()) continue;
    if (!value.is_object()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}.transform.headers' must be an object of strings", where);
    }
    if (value.as_object().size() > kMaxHeadersPerRule) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}.transform.headers' has {} headers; at most {}", where,
                       value.as_object().size(), kMaxHeadersPerRule);
    }
    for (const auto& [name, text] : value.as_object()) {
      if (!text.is_string()) {
        return MakeError(ErrorCode::kInvalidArgument, "header '{}' of '{}' must be a string",
                         std::string_view(name), where);
      }
      // The value as given (placeholders are visible text); filled, it is checked again.
      if (auto checked =
              RequestRewriter::CheckInjection({std::string(name), std::string(text.as_string())});
          !checked) {
        return MakeError(ErrorCode::kInvalidArgument, "'{}.transform.headers': {}", where,
                         checked.error().message);
      }
      RETURN_IF_ERROR(
          ForEachPlaceholder(name, text.as_string(), [](size_t, size_t, std::string_view) {}));
      out.push_back({std::string(name), std::string(text.as_string())});
    }
  }
  return out;
}

// `later` applied over `headers`: a name set again replaces the earlier setting.
void Apply(std::vector<HeaderInjection>& headers, std::vector<HeaderInjection> later) {
  for (HeaderInjection& setting : later) {
    std::erase_if(headers,
                  [&](const HeaderInjection& h) { return EqualsIgnoreCase(h.name, setting.name); });
    headers.push_back(std::move(setting));
  }
}

}  // namespace

Result<std::vector<DomainRules>> ParseTransformRules(const json::value* rules,
                                                     std::string_view where) {
  std::vector<DomainRules> out;
  if (rules == nullptr || rules->is_null()) return out;
  if (!rules->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' must be an object from domain names to lists of rules", where);
  }
  if (rules->as_object().size() > kMaxRuleDomains) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' has {} domains; at most {}", where,
                     rules->as_object().size(), kMaxRuleDomains);
  }
  for (const auto& [key, list] : rules->as_object()) {
    auto match = ParseEgressEntry(key);
    if (!match) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}': {}", where, match.error().message);
    }
    if (match->kind == EgressEntry::Kind::kCidr) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}': key '{}' is an address; rules are keyed by domain names (the "
                       "proxy matches them against Host and SNI)",
                       where, std::string_view(key));
    }
    std::string at = fmt::format("{}[\"{}\"]", where, match->text);
    auto same = [&](const DomainRules& r) { return r.match.text == match->text; };
    if (std::any_of(out.begin(), out.end(), same)) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}' is given twice", at);
    }
    if (!list.is_array()) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a list of rules", at);
    }
    if (list.as_array().size() > kMaxRulesPerDomain) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}' has {} rules; at most {}", at,
                       list.as_array().size(), kMaxRulesPerDomain);
    }
    DomainRules domain{.match = std::move(*match), .headers = {}};
    for (const json::value& rule : list.as_array()) {
      if (!rule.is_object()) {
        return MakeError(ErrorCode::kInvalidArgument, "each rule of '{}' must be an object", at);
      }
      for (const auto& [field, value] : rule.as_object()) {
        if (field != "transform") {
          return MakeError(ErrorCode::kInvalidArgument,
                           "'{}': rule field '{}' is not supported (only 'transform')", at,
                           std::string_view(field));
        }
        ASSIGN_OR_RETURN(auto headers, ParseHeaders(value, at));
        Apply(domain.headers, std::move(headers));
      }
    }
    out.push_back(std::move(domain));
  }
  return out;
}

const DomainRules* RulesFor(const std::vector<DomainRules>& rules, std::string_view name) {
  const DomainRules* best = nullptr;
  for (const DomainRules& rule : rules) {
    if (!MatchesDomain(rule.match, name)) continue;
    if (rule.match.kind == EgressEntry::Kind::kDomain) return &rule;
    if (best == nullptr || rule.match.domain.size() > best->match.domain.size()) best = &rule;
  }
  return best;
}

std::vector<std::string> SecretNamesIn(std::string_view value) {
  std::vector<std::string> out;
  (void)ForEachPlaceholder("", value,
                           [&](size_t, size_t, std::string_view name) { out.emplace_back(name); });
  return out;
}

Result<std::vector<HeaderInjection>> FillSecrets(const std::vector<HeaderInjection>& headers,
                                                 const ResolveSecret& resolve) {
  std::vector<HeaderInjection> out;
  for (const HeaderInjection& header : headers) {
    std::string filled;
    size_t copied = 0;
    Status failed = Ok();
    RETURN_IF_ERROR(ForEachPlaceholder(header.name, header.value,
                                       [&](size_t at, size_t size, std::string_view name) {
                                         if (!failed) return;
                                         filled.append(header.value, copied, at - copied);
                                         copied = at + size;
                                         auto value = resolve(name);
                                         if (!value) {
                                           failed = tl::unexpected(value.error());
                                           return;
                                         }
                                         filled += *value;
                                       }));
    RETURN_IF_ERROR(failed);
    filled.append(header.value, copied);
    HeaderInjection injection{header.name, std::move(filled)};
    // SECURITY: a secret's value could hold what splits a header (the store refuses it too).
    RETURN_IF_ERROR(RequestRewriter::CheckInjection(injection));
    out.push_back(std::move(injection));
  }
  return out;
}

json::object TransformRulesJson(const std::vector<DomainRules>& rules, bool redact) {
  json::object out;
  for (const DomainRules& rule : rules) {
    json::object headers;
    for (const HeaderInjection& header : rule.headers) {
      headers[header.name] = redact ? json::string(kRedactedValue) : json::string(header.value);
    }
    json::array list;
    list.emplace_back(json::object{{"transform", json::object{{"headers", std::move(headers)}}}});
    out[rule.match.text] = std::move(list);
  }
  return out;
}

}  // namespace isobox::net
