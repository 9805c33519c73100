#include "server/routes/templates.h"

#include <boost/json.hpp>
#include <charconv>

#include "base/log.h"
#include "protocol/status.h"
#include "server/control/listing.h"
#include "server/http/on_worker.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using StringRequest = http::request<http::string_body>;

constexpr size_t kMaxLogPage = 100;  // E2B's cap on one status page
constexpr std::chrono::hours kUploadUrlTtl{1};
constexpr const char* kEnvdVersion = "0.6.13";

struct Reply {
  http::status status;
  std::string body;
};

Reply ErrorReply(const Error& error) {
  int status = protocol::HttpStatus(error);
  return {static_cast<http::status>(status), JsonError(status, error.message)};
}
Reply Invalid(std::string_view message) {
  return {http::status::bad_request, JsonError(400, message)};
}
Reply Json(http::status status, const json::value& value) {
  return {status, json::serialize(value)};
}

json::array Strings(const std::vector<std::string>& items) {
  json::array out;
  for (const std::string& item : items) out.emplace_back(item);
  return out;
}

json::value OptionalTime(const std::optional<SystemTime>& time) {
  if (!time) return nullptr;
  return json::value(FormatRfc3339(*time));
}

Result<json::value> ParseBody(const StringRequest& request) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(request.body(), false));
  return json::value(std::move(body));
}

// The latest build of a template: the one its default tag names, else the newest.
const BuildRecord* Latest(const std::vector<BuildRecord>& builds,
                          const std::vector<TagRecord>& tags) {
  for (const TagRecord& tag : tags) {
    if (tag.tag != "default") continue;
    for (const BuildRecord& build : builds) {
      if (build.id == tag.build_id) return &build;
    }
  }
  return builds.empty() ? nullptr : &builds.back();
}

json::object BuildJson(const BuildRecord& build, const TemplateRecord& tmpl) {
  return json::object{
      {"buildID", build.id},
      {"status", BuildStatusName(build.status)},
      {"createdAt", FormatRfc3339(build.created_at)},
      {"updatedAt",
       FormatRfc3339(build.finished_at.value_or(build.started_at.value_or(build.created_at)))},
      {"finishedAt", OptionalTime(build.finished_at)},
      {"cpuCount", build.cpu_count},
      {"memoryMB", build.memory_mb},
      {"diskSizeMB", tmpl.disk_mb},
      {"envdVersion", kEnvdVersion}};
}

// E2B's Template (GET /templates).
Result<json::object> TemplateJson(TemplateCatalog& catalog, const TemplateRecord& tmpl) {
  ASSIGN_OR_RETURN(std::vector<BuildRecord> builds, catalog.Builds(tmpl));
  ASSIGN_OR_RETURN(std::vector<TagRecord> tags, catalog.store().TemplateTags(tmpl.id));
  const BuildRecord* latest = Latest(builds, tags);
  return json::object{{"templateID", tmpl.id},
                      {"buildID", latest ? latest->id : std::string()},
                      {"buildStatus", latest ? BuildStatusName(latest->status) : "waiting"},
                      {"cpuCount", tmpl.cpu_count},
                      {"memoryMB", tmpl.memory_mb},
                      {"diskSizeMB", tmpl.disk_mb},
                      {"envdVersion", kEnvdVersion},
                      {"public", tmpl.is_public},
                      {"aliases", Strings(tmpl.names)},
                      {"names", Strings(tmpl.names)},
                      {"createdAt", FormatRfc3339(tmpl.created_at)},
                      {"updatedAt", FormatRfc3339(tmpl.updated_at)},
                      {"createdBy", nullptr},
                      {"lastSpawnedAt", OptionalTime(tmpl.last_spawned_at)},
                      {"spawnCount", tmpl.spawn_count},
                      {"buildCount", builds.size()}};
}

Reply RequestBuild(const StringRequest& request, TemplatesContext& context) {
  auto body = ParseBody(request);
  if (!body) return Invalid(body.error().message);
  auto parsed = protocol::ParseTemplateRequest(*body);
  if (!parsed) return Invalid(parsed.error().message);
  auto requested = context.service.catalog.RequestBuild(context.tenant, *parsed);
  if (!requested) return ErrorReply(requested.error());
  return Json(http::status::accepted, json::object{{"templateID", requested->tmpl.id},
                                                   {"buildID", requested->build.id},
                                                   {"tags", Strings(requested->build.tags)},
                                                   {"names", Strings(requested->tmpl.names)},
                                                   {"aliases", Strings(requested->tmpl.names)},
                                                   {"public", requested->tmpl.is_public}});
}

Reply StartBuild(const StringRequest& request, TemplatesContext& context,
                 const std::string& template_id, const std::string& build_id) {
  auto body = ParseBody(request);
  if (!body) return Invalid(body.error().message);
  auto spec = protocol::ParseTemplateBuildSpec(*body);
  if (!spec) return Invalid(spec.error().message);
  if (auto started =
          context.service.builder.Start(context.tenant, template_id, build_id, std::move(*spec));
      !started) {
    return ErrorReply(started.error());
  }
  return {http::status::accepted, ""};  // Content-Length: 0 (the SDK reads no body)
}

Result<size_t> SizeParam(std::string_view name, const std::string& value, size_t max) {
  size_t out = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size() || out > max) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be an integer from 0 to {}", name,
                     max);
  }
  return out;
}

json::array EntriesJson(const std::vector<BuildLogEntry>& entries) {
  json::array out;
  for (const BuildLogEntry& entry : entries) {
    json::object item{{"timestamp", FormatRfc3339(entry.timestamp)},
                      {"level", LogLevelName(entry.level)},
                      {"message", entry.message}};
    if (!entry.step.empty()) item["step"] = entry.step;
    out.push_back(std::move(item));
  }
  return out;
}

Reply BuildStatus(std::string_view query, TemplatesContext& context, const std::string& template_id,
                  const std::string& build_id) {
  size_t offset = 0;
  size_t limit = kMaxLogPage;
  LogLevel level = LogLevel::kDebug;
  auto params = QueryParams(query);
  if (!params) return Invalid(params.error().message);
  for (const auto& [key, value] : *params) {
    if (key == "logsOffset") {
      auto parsed = SizeParam(key, value, SIZE_MAX / 2);
      if (!parsed) return Invalid(parsed.error().message);
      offset = *parsed;
    } else if (key == "limit") {
      auto parsed = SizeParam(key, value, kMaxLogPage);
      if (!parsed) return Invalid(parsed.error().message);
      limit = *parsed;
    } else if (key == "level") {
      auto parsed = ParseLogLevel(value);
      if (!parsed) return Invalid("'level' must be debug, info, warn or error");
      level = *parsed;
    }
  }
  auto build = context.service.catalog.FindBuild(context.tenant, template_id, build_id);
  if (!build) return ErrorReply(build.error());
  auto entries = context.service.builder.log().Read(build->id, offset, limit, level);
  if (!entries) return ErrorReply(entries.error());
  json::object out{{"templateID", build->template_id},
                   {"buildID", build->id},
                   {"status", BuildStatusName(build->status)},
                   {"logEntries", EntriesJson(*entries)},
                   {"logs", json::array()}};
  if (build->status == BuildStatus::kError && !build->reason.empty()) {
    boost::system::error_code ec;
    json::value reason = json::parse(build->reason, ec);
    if (!ec && reason.is_object()) {
      auto failed = context.service.builder.log().Read(build->id, 0, SIZE_MAX, LogLevel::kWarn);
      if (failed) reason.as_object()["logEntries"] = EntriesJson(*failed);
      out["reason"] = std::move(reason);
    }
  }
  return Json(http::status::ok, out);
}

Reply BuildLogs(std::string_view query, TemplatesContext& context, const std::string& template_id,
                const std::string& build_id) {
  size_t offset = 0;
  size_t limit = kMaxLogPage;
  LogLevel level = LogLevel::kDebug;
  auto params = QueryParams(query);
  if (!params) return Invalid(params.error().message);
  for (const auto& [key, value] : *params) {
    if (key == "cursor") {
      auto parsed = SizeParam(key, value, SIZE_MAX / 2);
      if (!parsed) return Invalid(parsed.error().message);
      offset = *parsed;
    } else if (key == "limit") {
      auto parsed = SizeParam(key, value, kMaxLogPage);
      if (!parsed) return Invalid(parsed.error().message);
      limit = *parsed;
    } else if (key == "level") {
      auto parsed = ParseLogLevel(value);
      if (!parsed) return Invalid("'level' must be debug, info, warn or error");
      level = *parsed;
    } else if (key == "direction" && value != "forward") {
      return Invalid("'direction': only forward is supported");
    }
  }
  auto build = context.service.catalog.FindBuild(context.tenant, template_id, build_id);
  if (!build) return ErrorReply(build.error());
  auto entries = context.service.builder.log().Read(build->id, offset, limit, level);
  if (!entries) return ErrorReply(entries.error());
  return Json(http::status::ok, json::object{{"logs", EntriesJson(*entries)}});
}

Reply FileUpload(TemplatesContext& context, const std::string& template_id,
                 const std::string& hash) {
  auto tmpl = context.service.catalog.Find(context.tenant, template_id, /*change=*/true);
  if (!tmpl) return ErrorReply(tmpl.error());
  if (hash.size() != 64 || hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Invalid(
        fmt::format("files hash '{}' must be 64 lower-case hex digits", hash.substr(0, 80)));
  }
  TemplateFiles& files = context.service.files;
  // SECURITY: archives are kept per API key: a key never learns of, or builds from,
  // another key's upload by guessing its hash.
  const std::string& owner = tmpl->owner;
  if (files.Present(owner, hash)) {
    return Json(http::status::created, json::object{{"present", true}});
  }
  std::string url = context.origin + files.UploadPath({owner, tmpl->id, hash}, kUploadUrlTtl);
  return Json(http::status::created, json::object{{"present", false}, {"url", url}});
}

Reply AliasLookup(TemplatesContext& context, const std::string& name) {
  auto ref = protocol::ParseTemplateRef(name);
  if (!ref) return Invalid(ref.error().message);
  if (context.service.catalog.IsBuiltin(ref->name)) {
    return Json(http::status::ok, json::object{{"templateID", ref->name}, {"public", true}});
  }
  auto tmpl = context.service.catalog.Find(context.tenant, ref->name, false, Hidden::kForbidden);
  if (!tmpl) return ErrorReply(tmpl.error());
  if (!ref->tag.empty()) {
    auto build = context.service.catalog.ResolveBuild(context.tenant, *ref);
    if (!build) return ErrorReply(build.error());
  }
  return Json(http::status::ok,
              json::object{{"templateID", tmpl->id}, {"public", tmpl->is_public}});
}

Reply AssignTags(const StringRequest& request, TemplatesContext& context) {
  auto body = ParseBody(request);
  if (!body) return Invalid(body.error().message);
  auto parsed = protocol::ParseTagAssignment(*body);
  if (!parsed) return Invalid(parsed.error().message);
  auto build = context.service.catalog.AssignTags(context.tenant, *parsed);
  if (!build) return ErrorReply(build.error());
  return Json(http::status::created,
              json::object{{"buildID", *build}, {"tags", Strings(parsed->tags)}});
}

Reply RemoveTags(const StringRequest& request, TemplatesContext& context) {
  auto body = ParseBody(request);
  if (!body) return Invalid(body.error().message);
  auto parsed = protocol::ParseTagRemoval(*body);
  if (!parsed) return Invalid(parsed.error().message);
  if (auto removed = context.service.catalog.RemoveTags(context.tenant, *parsed); !removed) {
    return ErrorReply(removed.error());
  }
  return {http::status::no_content, ""};
}

Reply ListTags(TemplatesContext& context, const std::string& id) {
  auto tags = context.service.catalog.Tags(context.tenant, id);
  if (!tags) return ErrorReply(tags.error());
  json::array out;
  for (const TagRecord& tag : *tags) {
    out.push_back(json::object{
        {"tag", tag.tag}, {"buildID", tag.build_id}, {"createdAt", FormatRfc3339(tag.created_at)}});
  }
  return Json(http::status::ok, out);
}

Reply ListTemplates(std::string_view query, TemplatesContext& context) {
  auto params = QueryParams(query);
  if (!params) return Invalid(params.error().message);
  for (const auto& [key, value] : *params) {
    // The CLI sends its project's teamID when it knows one: Isobox has no teams, an API
    // key sees its own templates.
    if (key != "teamID") return Invalid(fmt::format("unknown query parameter '{}'", key));
  }
  auto templates = context.service.catalog.List(context.tenant);
  if (!templates) return ErrorReply(templates.error());
  json::array out;
  for (const TemplateRecord& tmpl : *templates) {
    auto item = TemplateJson(context.service.catalog, tmpl);
    if (!item) return ErrorReply(item.error());
    out.push_back(std::move(*item));
  }
  return Json(http::status::ok, out);
}

Reply GetTemplate(TemplatesContext& context, const std::string& id) {
  auto tmpl = context.service.catalog.Find(context.tenant, id);
  if (!tmpl) return ErrorReply(tmpl.error());
  auto builds = context.service.catalog.Builds(*tmpl);
  if (!builds) return ErrorReply(builds.error());
  json::array items;
  for (const BuildRecord& build : *builds) items.push_back(BuildJson(build, *tmpl));
  return Json(http::status::ok, json::object{{"templateID", tmpl->id},
                                             {"public", tmpl->is_public},
                                             {"aliases", Strings(tmpl->names)},
                                             {"names", Strings(tmpl->names)},
                                             {"createdAt", FormatRfc3339(tmpl->created_at)},
                                             {"updatedAt", FormatRfc3339(tmpl->updated_at)},
                                             {"lastSpawnedAt", OptionalTime(tmpl->last_spawned_at)},
                                             {"spawnCount", tmpl->spawn_count},
                                             {"builds", std::move(items)}});
}

Reply UpdateTemplate(const StringRequest& request, TemplatesContext& context, const std::string& id,
                     bool v2) {
  auto body = ParseJsonObject(request.body(), false);
  if (!body) return Invalid(body.error().message);
  std::optional<bool> is_public;
  for (const auto& [key, value] : *body) {
    if (key != "public") return Invalid(fmt::format("unknown field '{}'", std::string(key)));
    if (!value.is_bool()) return Invalid("'public' must be a boolean");
    is_public = value.as_bool();
  }
  if (!is_public) return Invalid("'public' is required");
  if (auto set = context.service.catalog.SetPublic(context.tenant, id, *is_public); !set) {
    return ErrorReply(set.error());
  }
  if (!v2) return {http::status::ok, ""};
  auto tmpl = context.service.catalog.Find(context.tenant, id);
  if (!tmpl) return ErrorReply(tmpl.error());
  return Json(http::status::ok, json::object{{"names", Strings(tmpl->names)}});
}

Reply DeleteTemplate(TemplatesContext& context, const std::string& id) {
  auto deleted = context.service.catalog.Delete(context.tenant, id);
  if (!deleted) return ErrorReply(deleted.error());
  for (const std::string& build : *deleted) context.service.builder.log().Remove(build);
  // Its layers go unless another template or a running sandbox uses them.
  if (auto collected = context.service.builder.CollectLayers(); !collected) {
    LOG_WARN("template layers: {}", collected.error().message);
  }
  return {http::status::no_content, ""};
}

Reply NotAllowed(const StringRequest& request, std::string_view path) {
  return {http::status::method_not_allowed,
          JsonError(405, fmt::format("method {} is not allowed on {}",
                                     std::string_view(request.method_string()), path))};
}

Reply Route(const StringRequest& request, TemplatesContext& context) {
  std::string_view target = request.target();
  size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
  std::vector<std::string_view> parts = PathSegments(path);
  const http::verb method = request.method();
  std::string_view version;
  if (!parts.empty() && (parts[0] == "v2" || parts[0] == "v3")) {
    version = parts[0];
    parts.erase(parts.begin());
  }
  auto no_route = [&] {
    return Reply{http::status::not_found,
                 JsonError(404, fmt::format("no route for {} {}",
                                            std::string_view(request.method_string()), path))};
  };
  if (parts.empty() || parts[0] != "templates") return no_route();
  auto is = [&](http::verb verb) { return method == verb; };
  if (parts.size() == 1) {
    if (version == "v3")
      return is(http::verb::post) ? RequestBuild(request, context) : NotAllowed(request, path);
    if (is(http::verb::get)) return ListTemplates(query, context);
    if (is(http::verb::post)) {
      return {http::status::not_implemented,
              JsonError(501,
                        "the v1 template build API is not supported: use the v2 "
                        "Template SDK (Template.build) or `e2b template create`")};
    }
    return NotAllowed(request, path);
  }
  std::string second(parts[1]);
  if (parts.size() == 2 && second == "tags") {
    if (is(http::verb::post)) return AssignTags(request, context);
    if (is(http::verb::delete_)) return RemoveTags(request, context);
    return NotAllowed(request, path);
  }
  if (parts.size() == 3 && second == "aliases") {
    return is(http::verb::get) ? AliasLookup(context, std::string(parts[2]))
                               : NotAllowed(request, path);
  }
  if (parts.size() == 2) {
    if (is(http::verb::get) && version.empty()) return GetTemplate(context, second);
    if (is(http::verb::patch)) return UpdateTemplate(request, context, second, version == "v2");
    if (is(http::verb::delete_) && version.empty()) return DeleteTemplate(context, second);
    return NotAllowed(request, path);
  }
  if (parts.size() == 3 && parts[2] == "tags") {
    return is(http::verb::get) ? ListTags(context, second) : NotAllowed(request, path);
  }
  if (parts.size() == 4 && parts[2] == "files") {
    return is(http::verb::get) ? FileUpload(context, second, std::string(parts[3]))
                               : NotAllowed(request, path);
  }
  if (parts.size() == 4 && parts[2] == "builds" && version == "v2") {
    return is(http::verb::post) ? StartBuild(request, context, second, std::string(parts[3]))
                                : NotAllowed(request, path);
  }
  if (parts.size() == 5 && parts[2] == "builds" && parts[4] == "status") {
    return is(http::verb::get) ? BuildStatus(query, context, second, std::string(parts[3]))
                               : NotAllowed(request, path);
  }
  if (parts.size() == 5 && parts[2] == "builds" && parts[4] == "logs") {
    return is(http::verb::get) ? BuildLogs(query, context, second, std::string(parts[3]))
                               : NotAllowed(request, path);
  }
  return no_route();
}

}  // namespace

bool IsTemplatesPath(std::string_view path) {
  std::vector<std::string_view> parts = PathSegments(path);
  if (!parts.empty() && (parts[0] == "v2" || parts[0] == "v3")) parts.erase(parts.begin());
  return !parts.empty() && parts[0] == "templates";
}

Task<StringResponse> HandleTemplates(const http::request<http::string_body>& request,
                                     TemplatesContext& context) {
  // SQLite and the build queue: off the I/O thread.
  Reply reply = co_await OnWorker(context.workers, [&] { return Route(request, context); });
  co_return JsonResponse(reply.status, std::move(reply.body), request.version(),
                         request.keep_alive());
}

}  // namespace isobox::server
