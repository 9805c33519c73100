#include "server/routes/volumes.h"

#include <boost/json.hpp>

#include "protocol/status.h"
#include "runtime/containment.h"
#include "server/control/listing.h"
#include "server/http/on_worker.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using StringRequest = http::request<http::string_body>;

struct Reply {
  Reply(http::status s, std::string b, json::object facts = {})
      : status(s), body(std::move(b)), audit(std::move(facts)) {}
  http::status status;
  std::string body;
  json::object audit;  // the audit record's facts (VolumesAnswer)
};

Reply ErrorReply(const Error& error) {
  int status = protocol::HttpStatus(error);
  // A volume in use cannot go (E2B's API has no code for it; Conflict says what it is).
  if (error.code == ErrorCode::kFailedPrecondition) status = 409;
  return {static_cast<http::status>(status), JsonError(status, error.message)};
}

json::object VolumeJson(const VolumeRecord& record) {
  return json::object{{"volumeID", record.id},
                      {"name", record.name},
                      {"sizeMB", record.size_mb},
                      {"createdAt", FormatRfc3339(record.created_at)}};
}

json::object VolumeAndTokenJson(const VolumeRecord& record) {
  json::object out = VolumeJson(record);
  out["token"] = record.token;
  return out;
}

json::object AuditFacts(const VolumeRecord& record) {
  return json::object{{"volumeID", record.id}, {"name", record.name}};
}

Task<Reply> Create(const StringRequest& request, VolumesContext& context) {
  auto body = ParseNewVolume(request.body());
  if (!body) co_return Reply{http::status::bad_request, JsonError(400, body.error().message)};
  auto created = co_await OnWorker(context.workers, [&] {
    return context.volumes.Create(context.tenant, body->name, body->size_mb);
  });
  if (!created) co_return ErrorReply(created.error());
  co_return Reply{http::status::created, json::serialize(VolumeAndTokenJson(*created)),
                  AuditFacts(*created)};
}

Task<Reply> Get(const std::string& id, VolumesContext& context) {
  auto found =
      co_await OnWorker(context.workers, [&] { return context.volumes.Get(context.tenant, id); });
  if (!found) co_return ErrorReply(found.error());
  co_return Reply{http::status::ok, json::serialize(VolumeAndTokenJson(*found))};
}

Task<Reply> Delete(const std::string& id, VolumesContext& context) {
  std::optional<VolumeRecord> record;
  auto deleted = co_await OnWorker(context.workers, [&]() -> Status {
    ASSIGN_OR_RETURN(record, context.volumes.Get(context.tenant, id));
    return context.volumes.Delete(context.tenant, id);
  });
  if (!deleted) co_return ErrorReply(deleted.error());
  co_return Reply{http::status::no_content, "", AuditFacts(*record)};
}

Task<Reply> List(VolumesContext& context) {
  auto volumes =
      co_await OnWorker(context.workers, [&] { return context.volumes.List(context.tenant); });
  if (!volumes) co_return ErrorReply(volumes.error());
  json::array out;
  for (const VolumeRecord& record : *volumes) out.push_back(VolumeJson(record));
  co_return Reply{http::status::ok, json::serialize(out)};
}

Reply NotAllowed(const StringRequest& request, std::string_view path) {
  return {http::status::method_not_allowed,
          JsonError(405, fmt::format("method {} is not allowed on {}",
                                     std::string_view(request.method_string()), path))};
}

Task<Reply> Route(const StringRequest& request, VolumesContext& context) {
  std::string_view target = request.target();
  std::string_view path = target.substr(0, target.find('?'));
  std::vector<std::string_view> parts = PathSegments(path);
  const http::verb method = request.method();
  if (parts.size() == 1) {
    if (method == http::verb::get) co_return co_await List(context);
    if (method == http::verb::post) co_return co_await Create(request, context);
    co_return NotAllowed(request, path);
  }
  if (parts.size() != 2) {
    co_return Reply{http::status::not_found, JsonError(404, "no route for this /volumes path")};
  }
  auto id = QueryUnescape(parts[1]);
  if (!id) co_return Reply{http::status::bad_request, JsonError(400, id.error().message)};
  if (method == http::verb::get) co_return co_await Get(*id, context);
  if (method == http::verb::delete_) co_return co_await Delete(*id, context);
  co_return NotAllowed(request, path);
}

}  // namespace

bool IsVolumesPath(std::string_view path) {
  std::vector<std::string_view> parts = PathSegments(path);
  return !parts.empty() && parts[0] == "volumes";
}

Result<NewVolumeBody> ParseNewVolume(std::string_view text) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(text, false));
  NewVolumeBody out;
  const json::value* name = body.if_contains("name");
  if (name == nullptr || !name->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "'name' must be a string");
  }
  out.name = std::string(name->as_string());
  const json::value* size = body.if_contains("sizeMB");
  if (size != nullptr && !size->is_null()) {
    if (size->is_int64() && size->as_int64() > 0) {
      out.size_mb = static_cast<uint64_t>(size->as_int64());
    } else if (size->is_uint64()) {
      out.size_mb = size->as_uint64();
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "'sizeMB' must be a positive integer (MiB)");
    }
  }
  return out;
}

Result<std::vector<VolumeMountRequest>> ParseVolumeMounts(const json::object& body) {
  std::vector<VolumeMountRequest> out;
  const json::value* value = body.if_contains("volumeMounts");
  if (value == nullptr || value->is_null()) return out;
  if (!value->is_array()) {
    return MakeError(ErrorCode::kInvalidArgument, "'volumeMounts' must be an array");
  }
  const json::array& mounts = value->as_array();
  if (mounts.size() > static_cast<size_t>(runtime::kMaxVolumeMounts)) {
    return MakeError(ErrorCode::kInvalidArgument, "{} volume mounts: at most {} per sandbox",
                     mounts.size(), runtime::kMaxVolumeMounts);
  }
  for (size_t i = 0; i < mounts.size(); ++i) {
    const json::object* mount = mounts[i].if_object();
    const json::value* name = mount ? mount->if_contains("name") : nullptr;
    const json::value* path = mount ? mount->if_contains("path") : nullptr;
    if (name == nullptr || !name->is_string() || name->as_string().empty() || path == nullptr ||
        !path->is_string()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'volumeMounts[{}]' must be an object with strings 'name' and 'path'", i);
    }
    out.push_back({std::string(name->as_string()), std::string(path->as_string())});
  }
  RETURN_IF_ERROR(CheckVolumeMountPaths(out));
  return out;
}

json::array VolumeMountsJson(const std::vector<VolumeMount>& mounts) {
  json::array out;
  for (const VolumeMount& mount : mounts) {
    out.push_back(json::object{{"name", mount.name}, {"path", mount.path}});
  }
  return out;
}

Task<VolumesAnswer> HandleVolumes(const StringRequest& request, VolumesContext& context) {
  Reply reply = co_await Route(request, context);
  StringResponse response =
      JsonResponse(reply.status, std::move(reply.body), request.version(), request.keep_alive());
  co_return VolumesAnswer{std::move(response), std::move(reply.audit)};
}

}  // namespace isobox::server
