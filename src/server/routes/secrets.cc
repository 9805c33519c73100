#include "server/routes/secrets.h"

#include <boost/json.hpp>
#include <charconv>

#include "protocol/status.h"
#include "server/control/listing.h"
#include "server/http/on_worker.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using StringRequest = http::request<http::string_body>;

struct Reply {
  Reply(http::status s, std::string b, std::optional<std::string> token = std::nullopt,
        json::object facts = {})
      : status(s), body(std::move(b)), next_token(std::move(token)), audit(std::move(facts)) {}
  http::status status;
  std::string body;
  std::optional<std::string> next_token;  // X-Next-Token of a list page
  json::object audit;                     // the audit record's facts (SecretsAnswer)
};

Reply ErrorReply(const Error& error) {
  int status = protocol::HttpStatus(error);
  return {static_cast<http::status>(status), JsonError(status, error.message)};
}

Reply Invalid(std::string_view message) {
  return {http::status::bad_request, JsonError(400, message)};
}

// The Secret schema: metadata only, never the value.
json::object SecretJson(const SecretRecord& record) {
  json::object metadata;
  for (const auto& [key, value] : record.metadata) metadata[key] = value;
  return json::object{{"secretID", record.id},
                      {"name", record.name},
                      {"currentVersion", record.version},
                      {"metadata", std::move(metadata)},
                      {"createdAt", FormatRfc3339(record.created_at)},
                      {"updatedAt", FormatRfc3339(record.updated_at)}};
}

json::object AuditFacts(const SecretRecord& record) {
  return json::object{{"secretID", record.id}, {"name", record.name}, {"version", record.version}};
}

Result<std::string> RequiredString(const json::object& body, std::string_view field) {
  const json::value* value = body.if_contains(field);
  if (value == nullptr || !value->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a string", field);
  }
  return std::string(value->as_string());
}

// An optional {"k": "v"} `metadata`; absent or null is nullopt.
Result<std::optional<std::map<std::string, std::string>>> ParseMetadata(const json::object& body) {
  const json::value* value = body.if_contains("metadata");
  if (value == nullptr || value->is_null()) {
    return std::optional<std::map<std::string, std::string>>();
  }
  if (!value->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "'metadata' must be an object of strings");
  }
  std::map<std::string, std::string> out;
  for (const auto& [key, item] : value->as_object()) {
    if (!item.is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "'metadata' values must be strings");
    }
    out[std::string(key)] = std::string(item.as_string());
  }
  return std::optional(std::move(out));
}

struct ListParams {
  size_t limit = kDefaultSecretListLimit;
  std::optional<std::string> next_token;
};

Result<ListParams> ParseListParams(std::string_view query) {
  ListParams out;
  ASSIGN_OR_RETURN(auto params, QueryParams(query));
  for (auto& [key, value] : params) {
    if (key == "limit") {
      size_t limit = 0;
      auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), limit);
      if (err != std::errc() || end != value.data() + value.size() || limit < 1 ||
          limit > kMaxSecretListLimit) {
        return MakeError(ErrorCode::kInvalidArgument, "'limit' must be an integer from 1 to {}",
                         kMaxSecretListLimit);
      }
      out.limit = limit;
    } else if (key == "nextToken" && !value.empty()) {
      out.next_token = std::move(value);
    }
  }
  return out;
}

Task<Reply> Create(const StringRequest& request, SecretsContext& context) {
  auto body = ParseNewSecret(request.body());
  if (!body) co_return Invalid(body.error().message);
  auto created = co_await OnWorker(context.workers, [&] {
    return context.secrets.Create(body->name, body->value, body->metadata, context.tenant);
  });
  if (!created) co_return ErrorReply(created.error());
  co_return Reply{http::status::created, json::serialize(SecretJson(*created)), std::nullopt,
                  AuditFacts(*created)};
}

Task<Reply> Update(const std::string& secret, const StringRequest& request,
                   SecretsContext& context) {
  auto body = ParseSecretUpdate(request.body());
  if (!body) co_return Invalid(body.error().message);
  auto updated = co_await OnWorker(context.workers, [&] {
    return context.secrets.Update(secret, body->value, body->metadata, context.tenant);
  });
  if (!updated) co_return ErrorReply(updated.error());
  co_return Reply{http::status::ok, json::serialize(SecretJson(*updated)), std::nullopt,
                  AuditFacts(*updated)};
}

Task<Reply> Get(const std::string& secret, SecretsContext& context) {
  auto found = co_await OnWorker(context.workers,
                                 [&] { return context.secrets.Get(secret, context.tenant); });
  if (!found) co_return ErrorReply(found.error());
  co_return Reply{http::status::ok, json::serialize(SecretJson(*found))};
}

Task<Reply> Destroy(const std::string& secret, SecretsContext& context) {
  auto destroyed = co_await OnWorker(
      context.workers, [&] { return context.secrets.Destroy(secret, context.tenant); });
  if (!destroyed) co_return ErrorReply(destroyed.error());
  co_return Reply{http::status::no_content, "", std::nullopt, AuditFacts(*destroyed)};
}

Task<Reply> List(std::string_view query, SecretsContext& context) {
  auto params = ParseListParams(query);
  if (!params) co_return Invalid(params.error().message);
  auto page = co_await OnWorker(context.workers, [&] {
    return context.secrets.List(context.tenant, params->limit, params->next_token);
  });
  if (!page) co_return ErrorReply(page.error());
  json::array out;
  for (const SecretRecord& record : page->items) out.push_back(SecretJson(record));
  co_return Reply{http::status::ok, json::serialize(out), page->next_token};
}

Reply NotAllowed(const StringRequest& request, std::string_view path) {
  return {http::status::method_not_allowed,
          JsonError(405, fmt::format("method {} is not allowed on {}",
                                     std::string_view(request.method_string()), path))};
}

Task<Reply> Route(const StringRequest& request, SecretsContext& context) {
  std::string_view target = request.target();
  size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
  std::vector<std::string_view> parts = PathSegments(path);
  const http::verb method = request.method();
  if (parts.size() == 1) {
    if (method == http::verb::get) co_return co_await List(query, context);
    if (method == http::verb::post) co_return co_await Create(request, context);
    co_return NotAllowed(request, path);
  }
  if (parts.size() != 2) {
    co_return Reply{http::status::not_found, JsonError(404, "no route for this /secrets path")};
  }
  auto secret = QueryUnescape(parts[1]);
  if (!secret) co_return Invalid(secret.error().message);
  if (method == http::verb::get) co_return co_await Get(*secret, context);
  if (method == http::verb::post) co_return co_await Update(*secret, request, context);
  if (method == http::verb::delete_) co_return co_await Destroy(*secret, context);
  co_return NotAllowed(request, path);
}

}  // namespace

bool IsSecretsPath(std::string_view path) {
  std::vector<std::string_view> parts = PathSegments(path);
  return !parts.empty() && parts[0] == "secrets";
}

Result<NewSecretBody> ParseNewSecret(std::string_view text) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(text, false));
  NewSecretBody out;
  ASSIGN_OR_RETURN(out.name, RequiredString(body, "name"));
  ASSIGN_OR_RETURN(out.value, RequiredString(body, "value"));
  ASSIGN_OR_RETURN(auto metadata, ParseMetadata(body));
  if (metadata) out.metadata = std::move(*metadata);
  return out;
}

Result<SecretUpdateBody> ParseSecretUpdate(std::string_view text) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(text, false));
  SecretUpdateBody out;
  ASSIGN_OR_RETURN(out.value, RequiredString(body, "value"));
  ASSIGN_OR_RETURN(out.metadata, ParseMetadata(body));
  return out;
}

Task<SecretsAnswer> HandleSecrets(const StringRequest& request, SecretsContext& context) {
  Reply reply = co_await Route(request, context);
  StringResponse response =
      JsonResponse(reply.status, std::move(reply.body), request.version(), request.keep_alive());
  if (reply.next_token) response.set("X-Next-Token", *reply.next_token);
  co_return SecretsAnswer{std::move(response), std::move(reply.audit)};
}

}  // namespace isobox::server
