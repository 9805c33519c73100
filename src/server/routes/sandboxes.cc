#include "server/routes/sandboxes.h"

#include <fmt/chrono.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <vector>

#include "protocol/status.h"

namespace isobox::server {
namespace {

namespace json = boost::json;

constexpr const char* kEnvdVersion = "0.6.4";
constexpr const char* kClientId = "isobox";
constexpr int64_t kMaxTimeoutSeconds = 86400;

struct Reply {
  http::status status;
  std::string body;
};

Reply ErrorReply(const Error& error) {
  int status = protocol::HttpStatus(error.code);
  return {static_cast<http::status>(status), JsonError(status, error.message)};
}

Reply BadRequest(std::string message) {
  return {http::status::bad_request, JsonError(400, message)};
}

std::string Rfc3339(SystemTime time) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch());
  auto seconds = std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>(
      std::chrono::duration_cast<std::chrono::seconds>(ms));
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", seconds, ms.count() % 1000);
}

json::object StringMap(const std::map<std::string, std::string>& map) {
  json::object out;
  for (const auto& [key, value] : map) out[key] = value;
  return out;
}

// Reads an optional {"k": "v"} field. Errors name the field.
Result<std::map<std::string, std::string>> ParseStringMap(const json::object& body,
                                                          std::string_view field) {
  std::map<std::string, std::string> out;
  const json::value* value = body.if_contains(field);
  if (value == nullptr || value->is_null()) return out;
  if (!value->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be an object of strings", field);
  }
  for (const auto& [key, item] : value->as_object()) {
    if (!item.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}.{}' must be a string", field,
                       std::string_view(key));
    }
    out[std::string(key)] = std::string(item.as_string());
  }
  return out;
}

Result<SandboxOptions> ParseNewSandbox(std::string_view text) {
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "invalid JSON body: {}", ec.message());
  if (!parsed.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  }
  const json::object& body = parsed.as_object();
  SandboxOptions options;
  const json::value* tmpl = body.if_contains("templateID");
  if (tmpl == nullptr || !tmpl->is_string() || tmpl->as_string().empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "'templateID' must be a non-empty string");
  }
  options.template_id = std::string(tmpl->as_string());
  if (const json::value* timeout = body.if_contains("timeout");
      timeout != nullptr && !timeout->is_null()) {
    if (!timeout->is_int64() && !timeout->is_uint64()) {
      return MakeError(ErrorCode::kInvalidArgument, "'timeout' must be an integer (seconds)");
    }
    int64_t seconds = timeout->is_int64() ? timeout->as_int64() : kMaxTimeoutSeconds + 1;
    if (seconds < 1 || seconds > kMaxTimeoutSeconds) {
      return MakeError(ErrorCode::kInvalidArgument, "'timeout' must be between 1 and {} seconds",
                       kMaxTimeoutSeconds);
    }
    options.timeout = std::chrono::seconds(seconds);
  }
  ASSIGN_OR_RETURN(options.metadata, ParseStringMap(body, "metadata"));
  ASSIGN_OR_RETURN(options.env_vars, ParseStringMap(body, "envVars"));
  return options;
}

json::object SandboxJson(const SandboxInfo& info) {
  return json::object{{"sandboxID", info.id},          {"templateID", info.template_id},
                      {"alias", info.template_id},     {"clientID", kClientId},
                      {"envdVersion", kEnvdVersion},   {"envdAccessToken", info.access_token},
                      {"trafficAccessToken", nullptr}, {"domain", nullptr}};
}

json::object SandboxDetailJson(const SandboxInfo& info) {
  json::object out = SandboxJson(info);
  out["startedAt"] = Rfc3339(info.started_at);
  out["endAt"] = Rfc3339(info.end_at);
  out["state"] = "running";
  out["cpuCount"] = info.cpu_count;
  out["memoryMB"] = info.memory_mb;
  out["diskSizeMB"] = info.disk_mb;
  out["metadata"] = StringMap(info.metadata);
  return out;
}

// Runs a blocking registry call on a worker thread and resumes on the caller's executor.
template <typename F>
Task<std::invoke_result_t<F>> OnWorker(asio::thread_pool& workers, F f) {
  auto home = co_await asio::this_coro::executor;
  co_await asio::post(workers.get_executor(), asio::use_awaitable);
  auto result = f();
  co_await asio::post(home, asio::use_awaitable);
  co_return result;
}

Task<Reply> CreateSandbox(const StringRequest& request, ControlContext& context) {
  auto options = ParseNewSandbox(request.body());
  if (!options) co_return BadRequest(options.error().message);
  auto info = co_await OnWorker(context.workers, [&] { return context.registry.Create(*options); });
  if (!info) co_return ErrorReply(info.error());
  co_return Reply{http::status::created, json::serialize(SandboxJson(*info))};
}

Task<Reply> KillSandbox(const std::string& id, ControlContext& context) {
  auto killed = co_await OnWorker(context.workers, [&] { return context.registry.Kill(id); });
  if (!killed) co_return ErrorReply(killed.error());
  co_return Reply{http::status::no_content, ""};
}

Reply GetSandbox(const std::string& id, ControlContext& context) {
  auto info = context.registry.Get(id);
  if (!info) return ErrorReply(Error{ErrorCode::kNotFound, 0, "sandbox '" + id + "' not found"});
  return {http::status::ok, json::serialize(SandboxDetailJson(*info))};
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    size_t start = path.find_first_not_of('/');
    if (start == std::string_view::npos) break;
    path.remove_prefix(start);
    size_t end = path.find('/');
    out.push_back(path.substr(0, end));
    path.remove_prefix(end == std::string_view::npos ? path.size() : end);
  }
  return out;
}

Task<Reply> Route(const StringRequest& request, ControlContext& context) {
  std::string_view target = request.target();
  std::string_view path = target.substr(0, target.find('?'));
  std::vector<std::string_view> parts = Segments(path);
  if (!parts.empty() && parts[0] == "v2") parts.erase(parts.begin());
  const http::verb method = request.method();
  if (parts.size() == 1 && parts[0] == "sandboxes") {
    if (method == http::verb::post) co_return co_await CreateSandbox(request, context);
  } else if (parts.size() == 2 && parts[0] == "sandboxes") {
    std::string id(parts[1]);
    if (method == http::verb::get) co_return GetSandbox(id, context);
    if (method == http::verb::delete_) co_return co_await KillSandbox(id, context);
  } else {
    co_return Reply{http::status::not_found,
                    JsonError(404, fmt::format("no route for {} {}",
                                               std::string_view(request.method_string()), path))};
  }
  co_return Reply{http::status::method_not_allowed,
                  JsonError(405, fmt::format("method {} is not allowed on {}",
                                             std::string_view(request.method_string()), path))};
}

}  // namespace

Task<StringResponse> HandleControl(const StringRequest& request, ControlContext& context) {
  Reply reply = co_await Route(request, context);
  co_return JsonResponse(reply.status, std::move(reply.body), request.version(),
                         request.keep_alive());
}

}  // namespace isobox::server
