#include "envd/init.h"

#include <boost/json.hpp>
#include <charconv>
#include <ctime>

#include "envd/server.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

Result<std::optional<std::string>> OptionalString(const json::object& object,
                                                  std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return std::optional<std::string>();
  if (!value->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a string", key);
  }
  return std::optional<std::string>(std::string(value->get_string()));
}

// Digits at text[at, at + n) as a number; -1 if they are not all digits.
int Digits(std::string_view text, size_t at, size_t n) {
  if (at + n > text.size()) return -1;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + n, value);
  return ec == std::errc() && end == text.data() + at + n ? value : -1;
}

}  // namespace

std::optional<int64_t> ParseRfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't') ||
      text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  int year = Digits(text, 0, 4), month = Digits(text, 5, 2), day = Digits(text, 8, 2);
  int hour = Digits(text, 11, 2), minute = Digits(text, 14, 2), second = Digits(text, 17, 2);
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
      minute < 0 || minute > 59 || second < 0 || second > 60) {
    return std::nullopt;
  }
  size_t at = 19;
  int64_t nanos = 0;
  if (at < text.size() && text[at] == '.') {
    int64_t scale = 100000000;
    size_t digits = 0;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++digits) {
      nanos += (text[at] - '0') * scale;
      scale /= 10;
    }
    if (digits == 0 || digits > 9) return std::nullopt;
  }
  int64_t offset = 0;
  std::string_view zone = text.substr(at);
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int hours = Digits(zone, 1, 2), minutes = Digits(zone, 4, 2);
    if (hours < 0 || hours > 23 || minutes < 0 || minutes > 59) return std::nullopt;
    offset = (hours * 3600 + minutes * 60) * (zone[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t seconds = static_cast<int64_t>(::timegm(&tm)) - offset;
  return seconds * 1000000000 + nanos;
}

namespace {

// "envVars": an optional object of strings, in order.
Result<std::vector<std::pair<std::string, std::string>>> ParseEnvVars(const json::object& object) {
  std::vector<std::pair<std::string, std::string>> env;
  const json::value* envs = object.if_contains("envVars");
  if (envs == nullptr || envs->is_null()) return env;
  if (!envs->is_object()) return MakeError(ErrorCode::kInvalidArgument, "'envVars' must be an object");
  for (const auto& [key, value] : envs->get_object()) {
    if (!value.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "'envVars' values must be strings");
    }
    env.emplace_back(std::string(key), std::string(value.get_string()));
  }
  return env;
}

// Adds `env` to the config's variables; one of the same name is replaced in place.
void MergeEnvVars(Config& config, const std::vector<std::pair<std::string, std::string>>& env) {
  for (const auto& [key, value] : env) {
    bool replaced = false;
    for (auto& entry : config.env_vars) {
      if (entry.first == key) {
        entry.second = value;
        replaced = true;
      }
    }
    if (!replaced) config.env_vars.emplace_back(key, value);
  }
}

}  // namespace

Result<InitRequest> ParseInitRequest(std::string_view text) {
  InitRequest request;
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return request;
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "request body must be a JSON object");
  }
  const json::object& object = root.get_object();
  ASSIGN_OR_RETURN(request.access_token, OptionalString(object, "accessToken"));
  ASSIGN_OR_RETURN(request.default_user, OptionalString(object, "defaultUser"));
  ASSIGN_OR_RETURN(request.default_workdir, OptionalString(object, "defaultWorkdir"));
  ASSIGN_OR_RETURN(auto timestamp, OptionalString(object, "timestamp"));
  if (timestamp) {
    request.timestamp_ns = ParseRfc3339(*timestamp);
    if (!request.timestamp_ns) {
      return MakeError(ErrorCode::kInvalidArgument, "'timestamp' must be an RFC 3339 time");
    }
  }
  ASSIGN_OR_RETURN(request.env_vars, ParseEnvVars(object));
  if (request.default_workdir && !request.default_workdir->empty() &&
      request.default_workdir->front() != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "'defaultWorkdir' must be an absolute path");
  }
  return request;
}

Status ApplyInit(Envd& envd, const InitRequest& request) {
  Config& config = envd.config;
  // SECURITY: /init can replace the token and the environment of every later process,
  // so once envd has a token, only its holder may call it (the server-wide header check
  // does not cover /init, as in E2B, where the body carries the token).
  if (!config.access_token.empty() &&
      !(request.access_token && SecretEquals(*request.access_token, config.access_token))) {
    return MakeError(ErrorCode::kUnauthenticated, "{}",
                     request.access_token ? "access token validation failed"
                                          : "access token reset not authorized");
  }
  bool new_user = request.default_user && !request.default_user->empty();
  if (new_user && !envd.users.Lookup(*request.default_user)) {
    return MakeError(ErrorCode::kInvalidArgument, "unknown user '{}'", *request.default_user);
  }
  if (request.timestamp_ns) {
    if (*request.timestamp_ns <= envd.last_init_ns) return Ok();  // an older request
    envd.last_init_ns = *request.timestamp_ns;
  }
  if (new_user) config.default_user = *request.default_user;
  if (request.default_workdir && !request.default_workdir->empty()) {
    config.default_workdir = *request.default_workdir;
  }
  MergeEnvVars(config, request.env_vars);
  std::string token = request.access_token.value_or("");
  const bool token_changed = token != config.access_token;
  config.access_token = std::move(token);
  // SECURITY: the code interpreter checks the same token; it learns the new one before
  // this /init is answered, so no request sent after the answer meets the old one.
  if (token_changed && envd.access_token_changed) envd.access_token_changed();
  return Ok();
}

Status AdoptIdentity(Envd& envd, std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "identity must be a JSON object");
  }
  const json::object& object = root.get_object();
  const json::value* id = object.if_contains("sandboxId");
  const json::value* token = object.if_contains("accessToken");
  if (id == nullptr || !id->is_string() || token == nullptr || !token->is_string() ||
      token->get_string().empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "identity needs sandboxId and accessToken");
  }
  ASSIGN_OR_RETURN(auto env, ParseEnvVars(object));
  Config& config = envd.config;
  config.sandbox_id = std::string(id->get_string());
  MergeEnvVars(config, env);
  config.access_token = std::string(token->get_string());
  if (envd.access_token_changed) envd.access_token_changed();
  return Ok();
}

}  // namespace isobox::envd
