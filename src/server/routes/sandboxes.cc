#include "server/routes/sandboxes.h"

#include <fmt/chrono.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <optional>
#include <vector>

#include "base/log.h"
#include "base/printable.h"
#include "protocol/status.h"
#include "server/control/listing.h"
#include "server/http/on_worker.h"
#include "server/routes/control_reply.h"
#include "server/routes/snapshots.h"
#include "server/routes/volumes.h"

namespace isobox::server {
namespace {

namespace json = boost::json;


constexpr int64_t kDefaultTimeoutSeconds = 300;

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

Result<bool> ParseBool(const json::object& body, std::string_view field) {
  const json::value* value = body.if_contains(field);
  if (value == nullptr || value->is_null()) return false;
  if (!value->is_bool())
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a boolean", field);
  return value->as_bool();
}

}  // namespace

namespace {

// E2B's lifecycle fields of a create: autoPause, autoPauseMemory (its onTimeout
// keepMemory) and autoResume ({enabled}), checked together as E2B's API checks them.
Status ParseLifecycle(const json::object& body, SandboxOptions& options) {
  ASSIGN_OR_RETURN(options.auto_pause, ParseBool(body, "autoPause"));
  options.auto_pause_memory = true;
  if (const json::value* memory = body.if_contains("autoPauseMemory");
      memory != nullptr && !memory->is_null()) {
    if (!memory->is_bool()) {
      return MakeError(ErrorCode::kInvalidArgument, "'autoPauseMemory' must be a boolean");
    }
    if (!options.auto_pause) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'autoPauseMemory' is only allowed with 'autoPause': true");
    }
    options.auto_pause_memory = memory->as_bool();
  }
  options.auto_resume = false;
  if (const json::value* resume = body.if_contains("autoResume");
      resume != nullptr && !resume->is_null()) {
    if (!resume->is_object()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'autoResume' must be an object: {\"enabled\": true|false}");
    }
    for (const auto& [key, value] : resume->as_object()) {
      if (key != "enabled") {
        return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}' in 'autoResume'",
                         Printable(std::string_view(key).substr(0, 64)));
      }
      if (!value.is_bool()) {
        return MakeError(ErrorCode::kInvalidArgument, "'autoResume.enabled' must be a boolean");
      }
      options.auto_resume = value.as_bool();
    }
  }
  if (options.auto_resume && !options.auto_pause) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'autoResume' can only be enabled with 'autoPause': true");
  }
  if (options.auto_resume && !options.auto_pause_memory) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'autoResume' cannot be enabled with 'autoPauseMemory': false (a "
                     "files-only pause is resumed explicitly, with connect)");
  }
  return Ok();
}

// What a create may hold; anything else is refused rather than ignored.
constexpr std::array<std::string_view, 13> kCreateFields = {
    "templateID", "metadata", "envVars",       "timeout",    "allow_internet_access",
    "network",    "autoPause", "autoPauseMemory", "autoResume", "volumeMounts",
    "secure",     "mcp",       "iam"};

}  // namespace

Result<SandboxOptions> ParseNewSandbox(std::string_view text, bool network) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(text, true));
  for (const auto& [key, value] : body) {
    if (std::find(kCreateFields.begin(), kCreateFields.end(), std::string_view(key)) ==
        kCreateFields.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}' in a sandbox create",
                       Printable(std::string_view(key).substr(0, 64)));
    }
  }
  // `secure` asks for what every sandbox has: its agent answers its access token only.
  if (const json::value* secure = body.if_contains("secure");
      secure != nullptr && !secure->is_null() && !secure->is_bool()) {
    return MakeError(ErrorCode::kInvalidArgument, "'secure' must be a boolean");
  }
  for (std::string_view field : {"mcp", "iam"}) {
    if (const json::value* value = body.if_contains(field); value != nullptr && !value->is_null()) {
      return MakeError(ErrorCode::kUnimplemented,
                       "'{}' is not supported by Isobox yet: create the sandbox without it",
                       field);
    }
  }
  SandboxOptions options;
  const json::value* tmpl = body.if_contains("templateID");
  if (tmpl == nullptr || !tmpl->is_string() || tmpl->as_string().empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "'templateID' must be a non-empty string");
  }
  options.template_id = std::string(tmpl->as_string());
  ASSIGN_OR_RETURN(auto timeout, ParseTimeout(body));
  if (timeout) options.timeout = *timeout;
  ASSIGN_OR_RETURN(options.metadata, ParseStringMap(body, "metadata"));
  ASSIGN_OR_RETURN(options.env_vars, ParseStringMap(body, "envVars"));
  RETURN_IF_ERROR(ParseLifecycle(body, options));
  ASSIGN_OR_RETURN(options.network, net::ParseNetworkConfig(body, /*default_internet=*/network));
  ASSIGN_OR_RETURN(options.volume_requests, ParseVolumeMounts(body));
  // Egress asked of a daemon without networking; the ingress options need none.
  if (!network && !options.network.IsLoopbackOnly()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "this isoboxd gives sandboxes loopback only (--no-network): "
                     "'allow_internet_access' and 'network' rules cannot be honoured");
  }
  return options;
}

namespace {

json::object ListedJson(const SandboxInfo& info) {
  return json::object{{"sandboxID", info.id},
                      {"templateID", info.template_id},
                      {"alias", info.alias.empty() ? info.template_id : info.alias},
                      {"clientID", kClientId},
                      {"startedAt", FormatRfc3339(info.started_at)},
                      {"endAt", FormatRfc3339(info.end_at)},
                      {"state", SandboxStateName(info.state)},
                      {"cpuCount", info.cpu_count},
                      {"memoryMB", info.memory_mb},
                      {"diskSizeMB", info.disk_mb},
                      {"envdVersion", kEnvdVersion},
                      {"metadata", StringMap(info.metadata)},
                      {"volumeMounts", VolumeMountsJson(info.volume_mounts)}};
}

json::object DetailJson(const SandboxInfo& info) {
  json::object out = ListedJson(info);
  out["envdAccessToken"] = info.access_token;
  out["allowInternetAccess"] = info.network.internet;
  out["network"] = net::NetworkJson(info.network);
  out["domain"] = nullptr;
  out["lifecycle"] =
      json::object{{"onTimeout", info.auto_pause ? "pause" : "kill"}, {"autoResume", info.auto_resume}};
  return out;
}

json::object MetricJson(const MetricSample& sample) {
  auto unix_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(sample.time.time_since_epoch()).count();
  return json::object{{"timestamp", FormatRfc3339(sample.time)},
                      {"timestampUnix", unix_seconds},
                      {"cpuCount", sample.cpu_count},
                      {"cpuUsedPct", sample.cpu_used_pct},
                      {"memUsed", sample.mem_used},
                      {"memTotal", sample.mem_total},
                      {"memCache", sample.mem_cache},
                      {"diskUsed", sample.disk_used},
                      {"diskTotal", sample.disk_total},
                      // isobox's own (the E2B SDKs ignore fields they do not know): the
                      // sandbox's network since it started (README "Network").
                      {"networkEgressBytes", sample.network.egress_bytes},
                      {"networkEgressPackets", sample.network.egress_packets},
                      {"networkDeniedPackets", sample.network.denied_packets},
                      {"networkDeniedConnections", sample.network.denied_connections}};
}

Task<Reply> CreateSandbox(const StringRequest& request, ControlContext& context) {
  auto options = ParseNewSandbox(request.body(), context.registry.NetworkEnabled());
  if (!options) co_return ErrorReply(options.error());
  options->owner = context.tenant.key_id;
  if (!options->volume_requests.empty() && context.volumes == nullptr) {
    co_return BadRequest("this isoboxd serves no volumes: 'volumeMounts' cannot be honoured");
  }
  auto info = co_await OnWorker(context.workers, [&]() -> Result<SandboxInfo> {
    // SECURITY: the key's own volumes (or, for an admin key, any by id); an unknown one is
    // 404 and nothing is started.
    if (!options->volume_requests.empty()) {
      ASSIGN_OR_RETURN(options->volume_mounts,
                       context.volumes->Resolve(context.tenant, options->volume_requests));
    }
    // A snapshot of this key (routes/snapshots.h): a clone of it.
    if (auto snapshot = FindSnapshot(options->template_id, context)) {
      if (!options->volume_mounts.empty()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "'volumeMounts' cannot be honoured for a sandbox from a snapshot yet");
      }
      return context.registry.CreateFromSnapshot(*snapshot, *options);
    }
    if (context.catalog != nullptr) {
      // A user-built template (name, name:tag or id) the key may use, or a built-in.
      ASSIGN_OR_RETURN(options->resolved,
                       context.catalog->Resolve(context.tenant, options->template_id));
    }
    ASSIGN_OR_RETURN(SandboxInfo created, context.registry.Create(*options));
    if (!created.build_id.empty()) {
      // The template's spawn count and last spawn (E2B's spawnCount, lastSpawnedAt): a
      // write to the store, off the create's path.
      asio::post(context.workers, [&catalog = *context.catalog, id = created.template_id,
                                   at = created.started_at] {
        if (auto counted = catalog.store().CountSpawn(id, at); !counted) {
          LOG_WARN("count a spawn of template {}: {}", id, counted.error().message);
        }
      });
    }
    return created;
  });
  if (!info) co_return ErrorReply(info.error());
  co_return Reply{http::status::created, json::serialize(SandboxJson(*info))};
}

Task<Reply> KillSandbox(const std::string& id, ControlContext& context) {
  if (Hidden(id, context)) co_return SandboxNotFound(id);
  auto killed = co_await OnWorker(context.workers, [&] { return context.registry.Kill(id); });
  if (!killed) co_return ErrorReply(killed.error());
  co_return Reply{http::status::no_content, ""};
}

// The pause's mode: E2B's `memory` (keepMemory, default true) and Isobox's own
// `Isobox-Pause-Mode: freeze` (cgroup freezer, memory kept). Untrusted.
Result<PauseMode> ParsePauseMode(const StringRequest& request) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(request.body(), true));
  for (const auto& [key, value] : body) {
    if (key != "memory") {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}' in a pause",
                       std::string_view(key));
    }
  }
  bool keep_memory = true;
  if (const json::value* memory = body.if_contains("memory"); memory && !memory->is_null()) {
    if (!memory->is_bool()) return MakeError(ErrorCode::kInvalidArgument, "'memory' must be a boolean");
    keep_memory = memory->as_bool();
  }
  std::string_view asked = request["Isobox-Pause-Mode"];
  if (!asked.empty() && asked != "freeze" && asked != "checkpoint") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "Isobox-Pause-Mode must be 'freeze' or 'checkpoint', not '{}'",
                     Printable(asked.substr(0, 64)));
  }
  if (!keep_memory && asked == "freeze") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'memory': false ends the processes, Isobox-Pause-Mode: freeze keeps "
                     "them: ask for one of the two");
  }
  if (!keep_memory) return PauseMode::kFiles;
  return asked == "freeze" ? PauseMode::kFreeze : PauseMode::kCheckpoint;
}

Task<Reply> PauseSandbox(const std::string& id, const StringRequest& request,
                         ControlContext& context) {
  if (Hidden(id, context)) co_return SandboxNotFound(id);
  auto mode = ParsePauseMode(request);
  if (!mode) co_return ErrorReply(mode.error());
  auto paused =
      co_await OnWorker(context.workers, [&] { return context.registry.Pause(id, *mode); });
  if (!paused && paused.error().code == ErrorCode::kFailedPrecondition) {
    co_return Reply{http::status::conflict, JsonError(409, paused.error().message)};
  }
  if (!paused) co_return ErrorReply(paused.error());
  Reply reply{http::status::no_content, ""};
  reply.pause_mode = *paused == PauseMode::kCheckpoint ? "checkpoint; memory freed"
                     : *paused == PauseMode::kFiles    ? "files; processes ended"
                                                       : "freezer; memory kept";
  co_return reply;
}

// connect (v1 and v2) and the older resume: resumes a paused sandbox, extends (never
// shortens) its end time. `resume_only`: 409 when it was not paused.
Task<Reply> ConnectSandbox(const std::string& id, const StringRequest& request,
                           ControlContext& context, bool resume_only) {
  auto body = ParseJsonObject(request.body(), true);
  if (!body) co_return BadRequest(body.error().message);
  auto timeout = ParseTimeout(*body);
  if (!timeout) co_return BadRequest(timeout.error().message);
  if (Hidden(id, context)) co_return SandboxNotFound(id);
  if (resume_only) {
    auto info = context.registry.Get(id);
    if (info && info->state == SandboxState::kRunning) {
      co_return Reply{http::status::conflict,
                      JsonError(409, fmt::format("sandbox '{}' is already running", id))};
    }
  }
  auto seconds = timeout->value_or(std::chrono::seconds(kDefaultTimeoutSeconds));
  auto connected =
      co_await OnWorker(context.workers, [&] { return context.registry.Connect(id, seconds); });
  if (!connected) co_return ErrorReply(connected.error());
  auto status =
      connected->second == ConnectOutcome::kResumed ? http::status::created : http::status::ok;
  co_return Reply{status, json::serialize(SandboxJson(connected->first))};
}

Reply SetTimeout(const std::string& id, const StringRequest& request, ControlContext& context) {
  auto body = ParseJsonObject(request.body(), true);
  if (!body) return BadRequest(body.error().message);
  auto timeout = ParseTimeout(*body);
  if (!timeout) return BadRequest(timeout.error().message);
  if (!*timeout) return BadRequest("'timeout' is required");
  if (Hidden(id, context)) return SandboxNotFound(id);
  auto set = context.registry.SetTimeout(id, **timeout);
  if (!set) return ErrorReply(set.error());
  return {http::status::no_content, ""};
}

// PUT /sandboxes/{id}/network (Sandbox.updateNetwork): 204; 404 unknown; 400 naming a bad
// entry, the sandbox's rules unchanged.
Task<Reply> UpdateNetwork(const std::string& id, const StringRequest& request,
                          ControlContext& context) {
  auto body = ParseJsonObject(request.body(), true);
  if (!body) co_return BadRequest(body.error().message);
  auto info = context.registry.Get(id);
  if (!info || !context.tenant.Sees(*info)) co_return SandboxNotFound(id);
  auto config = net::ParseNetworkUpdate(*body, info->network);
  if (!config) co_return BadRequest(config.error().message);
  auto updated = co_await OnWorker(context.workers,
                                   [&] { return context.registry.UpdateNetwork(id, *config); });
  if (!updated) co_return ErrorReply(updated.error());
  co_return Reply{http::status::no_content, ""};
}

Reply GetSandbox(const std::string& id, ControlContext& context) {
  auto info = context.registry.Get(id);
  if (!info || !context.tenant.Sees(*info)) return SandboxNotFound(id);
  return {http::status::ok, json::serialize(DetailJson(*info))};
}

// GET /isobox/sandboxes/{id}: the E2B detail plus how the sandbox ended, for live and
// recently ended sandboxes (E2B's GET answers 404 once a sandbox is gone).
Reply GetSandboxRecord(const std::string& id, ControlContext& context) {
  auto record = context.registry.Record(id);
  if (!record) return ErrorReply(record.error());
  // SECURITY: ended sandboxes too: their owner is in their record (control/tenancy.h).
  if (!*record || !context.tenant.Sees((*record)->info)) return SandboxNotFound(id);
  json::object out = DetailJson((*record)->info);
  json::object extra;
  if (const auto& end = (*record)->end) {
    out["state"] = "ended";
    out.erase("envdAccessToken");
    extra["endedAt"] = FormatRfc3339(end->at);
    extra["endReason"] = end->reason;
    extra["endMessage"] = end->message;
    extra["exitCode"] = end->exit_code ? json::value(*end->exit_code) : json::value(nullptr);
    extra["signal"] = end->signal ? json::value(*end->signal) : json::value(nullptr);
  }
  out["isobox"] = std::move(extra);
  return {http::status::ok, json::serialize(out)};
}

Result<SystemTime> ParseUnixSeconds(std::string_view text, std::string_view name) {
  int64_t seconds = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (err != std::errc() || end != text.data() + text.size() || seconds < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a unix time in seconds", name);
  }
  return SystemTime(std::chrono::seconds(seconds));
}

Reply GetMetrics(const std::string& id, std::string_view query, ControlContext& context) {
  SystemTime start{};
  SystemTime end = SystemTime::max();
  for (std::string_view param : SplitQuery(query)) {
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : param.substr(eq + 1);
    if (key != "start" && key != "end") continue;
    auto time = ParseUnixSeconds(value, key);
    if (!time) return BadRequest(time.error().message);
    (key == "start" ? start : end) = *time;
  }
  if (Hidden(id, context)) return SandboxNotFound(id);
  auto samples = context.registry.Metrics(id, start, end);
  if (!samples) return ErrorReply(samples.error());
  json::array out;
  for (const MetricSample& sample : *samples) out.push_back(MetricJson(sample));
  return {http::status::ok, json::serialize(out)};
}

Reply ListSandboxes(std::string_view query, ControlContext& context, bool v2) {
  auto parsed = ParseListQuery(query);
  if (!parsed) return BadRequest(parsed.error().message);
  // The v1 list shows running sandboxes only.
  if (!v2 && parsed->states.empty()) parsed->states = {SandboxState::kRunning};
  std::vector<SandboxInfo> visible = context.registry.List();
  std::erase_if(visible, [&](const SandboxInfo& info) { return !context.tenant.Sees(info); });
  auto page = ApplyListQuery(std::move(visible), *parsed);
  if (!page) return BadRequest(page.error().message);
  json::array out;
  for (const SandboxInfo& info : page->items) out.push_back(ListedJson(info));
  Reply reply{http::status::ok, json::serialize(out)};
  reply.next_token = page->next_token;
  return reply;
}

Reply NoRoute(const StringRequest& request, std::string_view path) {
  return {http::status::not_found,
          JsonError(404, fmt::format("no route for {} {}",
                                     std::string_view(request.method_string()), path))};
}

Reply NotAllowed(const StringRequest& request, std::string_view path) {
  return {http::status::method_not_allowed,
          JsonError(405, fmt::format("method {} is not allowed on {}",
                                     std::string_view(request.method_string()), path))};
}

// /sandboxes/{id}/<action>
Task<Reply> RouteAction(const StringRequest& request, ControlContext& context,
                        const std::string& id, std::string_view action, std::string_view query,
                        std::string_view path) {
  const http::verb method = request.method();
  if (action == "timeout" && method == http::verb::post) co_return SetTimeout(id, request, context);
  if (action == "connect" && method == http::verb::post) {
    co_return co_await ConnectSandbox(id, request, context, false);
  }
  if (action == "resume" && method == http::verb::post) {
    co_return co_await ConnectSandbox(id, request, context, true);
  }
  if (action == "pause" && method == http::verb::post) {
    co_return co_await PauseSandbox(id, request, context);
  }
  if (action == "metrics" && method == http::verb::get) co_return GetMetrics(id, query, context);
  if (action == "network" && method == http::verb::put) {
    co_return co_await UpdateNetwork(id, request, context);
  }
  if (action == "snapshots" && method == http::verb::post) {
    co_return co_await CreateSnapshot(id, request, context);
  }
  if (action == "fork" && method == http::verb::post) {
    co_return co_await ForkSandbox(id, request, context);
  }
  if (action == "timeout" || action == "connect" || action == "resume" || action == "pause" ||
      action == "metrics" || action == "network" || action == "snapshots" || action == "fork") {
    co_return NotAllowed(request, path);
  }
  co_return NoRoute(request, path);
}

Task<Reply> Route(const StringRequest& request, ControlContext& context) {
  std::string_view target = request.target();
  size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
  std::vector<std::string_view> parts = PathSegments(path);
  if (parts.size() == 2 && parts[0] == "isobox" && parts[1] == "pools") {
    if (request.method() != http::verb::get) co_return NotAllowed(request, path);
    // Pools are operator data (sizes, use by every tenant).
    if (!context.tenant.admin) co_return Forbidden("GET /isobox/pools");
    json::object out;
    for (const auto& [id, target] : context.registry.PoolTargets()) {
      json::object pool{{"ready", context.registry.PoolSize(id)},
                        {"target", target},
                        {"taken", context.registry.PoolTaken(id)}};
      // A user template's pool: what it fills with (empty while its name has no build).
      if (auto build = context.registry.PoolBuild(id)) {
        pool["templateID"] = build->first;
        pool["buildID"] = build->second;
      }
      out[id] = std::move(pool);
    }
    co_return Reply{http::status::ok, json::serialize(out)};
  }
  if (parts.size() == 3 && parts[0] == "isobox" && parts[1] == "sandboxes") {
    if (request.method() == http::verb::get) {
      co_return GetSandboxRecord(std::string(parts[2]), context);
    }
    co_return NotAllowed(request, path);
  }
  if (parts.size() == 1 && parts[0] == "snapshots") {
    if (request.method() == http::verb::get) co_return ListSnapshots(query, context);
    co_return NotAllowed(request, path);
  }
  // The SDK deletes a snapshot as a template (server.cc sends it here when it names one).
  if (parts.size() == 2 && parts[0] == "templates" && request.method() == http::verb::delete_) {
    co_return co_await DeleteSnapshot(parts[1], context);
  }
  bool v2 = !parts.empty() && parts[0] == "v2";
  if (v2) parts.erase(parts.begin());
  const http::verb method = request.method();
  if (parts.empty() || parts[0] != "sandboxes" || parts.size() > 3) {
    co_return NoRoute(request, path);
  }
  if (parts.size() == 1) {
    if (method == http::verb::post) co_return co_await CreateSandbox(request, context);
    if (method == http::verb::get) co_return ListSandboxes(query, context, v2);
    co_return NotAllowed(request, path);
  }
  std::string id(parts[1]);
  if (parts.size() == 2) {
    if (method == http::verb::get) co_return GetSandbox(id, context);
    if (method == http::verb::delete_) co_return co_await KillSandbox(id, context);
    co_return NotAllowed(request, path);
  }
  co_return co_await RouteAction(request, context, id, parts[2], query, path);
}

}  // namespace

Task<StringResponse> HandleControl(const StringRequest& request, ControlContext& context) {
  Reply reply = co_await Route(request, context);
  StringResponse response =
      JsonResponse(reply.status, std::move(reply.body), request.version(), request.keep_alive());
  if (reply.next_token) response.set("X-Next-Token", *reply.next_token);
  if (reply.pause_mode) response.set("Isobox-Pause-Mode", *reply.pause_mode);
  co_return response;
}

}  // namespace isobox::server
