#include "server/routes/control_reply.h"

#include <boost/json.hpp>

#include "protocol/status.h"

namespace isobox::server {
namespace json = boost::json;

std::vector<std::string_view> SplitQuery(std::string_view query) {
  std::vector<std::string_view> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    out.push_back(query.substr(0, amp));
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
  }
  return out;
}

Reply ErrorReply(const Error& error) {
  int status = protocol::HttpStatus(error);  // 507 for a full disk pool
  return {static_cast<http::status>(status), JsonError(status, error.message)};
}

Reply BadRequest(std::string_view message) {
  return {http::status::bad_request, JsonError(400, message)};
}

Reply SandboxNotFound(const std::string& id) {
  return ErrorReply(Error{ErrorCode::kNotFound, 0, "sandbox '" + id + "' not found"});
}

bool Hidden(const std::string& id, const ControlContext& context) {
  if (context.tenant.admin) return false;
  std::optional<SandboxInfo> info = context.registry.Get(id);
  return info && !context.tenant.Sees(*info);
}

Reply Forbidden(std::string_view what) {
  return {http::status::forbidden, JsonError(403, fmt::format("{} needs an admin API key", what))};
}

Result<std::optional<std::chrono::seconds>> ParseTimeout(const json::object& body) {
  const json::value* timeout = body.if_contains("timeout");
  if (timeout == nullptr || timeout->is_null()) return std::optional<std::chrono::seconds>();
  int64_t seconds = 0;
  if (timeout->is_int64()) {
    seconds = timeout->as_int64();
  } else if (timeout->is_uint64()) {
    seconds = kMaxTimeoutSeconds + 1;
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "'timeout' must be an integer (seconds)");
  }
  if (seconds < 0 || seconds > kMaxTimeoutSeconds) {
    return MakeError(ErrorCode::kInvalidArgument, "'timeout' must be between 0 and {} seconds",
                     kMaxTimeoutSeconds);
  }
  return std::optional(std::chrono::seconds(seconds));
}

json::object SandboxJson(const SandboxInfo& info) {
  json::value traffic = nullptr;
  if (!info.traffic_access_token.empty()) traffic = info.traffic_access_token;
  return json::object{{"sandboxID", info.id},
                      {"templateID", info.template_id},
                      {"alias", info.alias.empty() ? info.template_id : info.alias},
                      {"clientID", kClientId},
                      {"envdVersion", kEnvdVersion},
                      {"envdAccessToken", info.access_token},
                      {"trafficAccessToken", std::move(traffic)},
                      {"domain", nullptr}};
}

}  // namespace isobox::server
