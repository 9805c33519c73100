#include "server/control/template_catalog.h"

#include <openssl/rand.h>

#include <boost/json.hpp>
#include <set>

#include "server/control/ids.h"
#include "server/control/layer_store.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

tl::unexpected<Error> NoSuchTemplate(std::string_view name) {
  return MakeError(ErrorCode::kNotFound, "template '{}' not found", name);
}

// SECURITY: the one ownership check of templates: without it any key could rebuild,
// retag or delete another key's template. Public templates are readable by every key.
// Names whose lookups Resolve keeps (a bound on what unknown names could make it hold).
constexpr size_t kMaxResolved = 1024;

bool Sees(const Tenant& tenant, const TemplateRecord& record) {
  return tenant.admin || record.owner == tenant.key_id || record.is_public;
}
bool Changes(const Tenant& tenant, const TemplateRecord& record) {
  return tenant.admin || record.owner == tenant.key_id;
}

std::string StringField(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->as_string()) : std::string();
}

// A built-in template as a build result: no layers; its chain starts from what its base
// layer is made of, so that layers built on it are rebuilt when the host changes.
BuildResult BuiltinResult(const Template& builtin) {
  BuildResult result;
  result.base = builtin.id;
  result.chain = HashKeys("isobox-v1", {"template:" + builtin.id, builtin.identity});
  return result;
}

}  // namespace

std::string BuildResultJson(const BuildResult& result) {
  json::array layers;
  for (const std::string& layer : result.layers) layers.emplace_back(layer);
  json::array steps;
  for (const std::string& step : result.steps) steps.emplace_back(step);
  json::object env;
  for (const auto& [key, value] : result.env) env[key] = value;
  return json::serialize(json::object{{"base", result.base},
                                      {"layers", std::move(layers)},
                                      {"steps", std::move(steps)},
                                      {"chain", result.chain},
                                      {"env", std::move(env)},
                                      {"user", result.user},
                                      {"workdir", result.workdir},
                                      {"startCmd", result.start_cmd},
                                      {"readyCmd", result.ready_cmd},
                                      {"shell", result.shell}});
}

Result<BuildResult> ParseBuildResult(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec || !value.is_object()) {
    return MakeError(ErrorCode::kDataLoss, "a build's stored result is not a JSON object");
  }
  const json::object& object = value.as_object();
  BuildResult result;
  result.base = StringField(object, "base");
  if (const json::value* layers = object.if_contains("layers"); layers && layers->is_array()) {
    for (const json::value& layer : layers->as_array()) {
      if (layer.is_string()) result.layers.emplace_back(layer.as_string());
    }
  }
  if (const json::value* steps = object.if_contains("steps"); steps && steps->is_array()) {
    for (const json::value& step : steps->as_array()) {
      if (step.is_string()) result.steps.emplace_back(step.as_string());
    }
  }
  result.chain = StringField(object, "chain");
  if (const json::value* env = object.if_contains("env"); env && env->is_object()) {
    for (const auto& [key, item] : env->as_object()) {
      if (item.is_string()) result.env[std::string(key)] = std::string(item.as_string());
    }
  }
  result.user = StringField(object, "user");
  result.workdir = StringField(object, "workdir");
  result.start_cmd = StringField(object, "startCmd");
  result.ready_cmd = StringField(object, "readyCmd");
  if (std::string shell = StringField(object, "shell"); !shell.empty()) result.shell = shell;
  return result;
}

std::string NewBuildId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no CSPRNG: nothing is safe
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

bool IsBuildId(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<TemplateCatalog::Requested> TemplateCatalog::RequestBuild(
    const Tenant& tenant, const protocol::TemplateRequest& request) {
  const std::string& name = request.ref.name;
  if (IsBuiltin(name)) {
    return MakeError(ErrorCode::kAlreadyExists, "'{}' is a built-in template: choose another name",
                     name);
  }
  std::vector<std::string> tags = request.tags;
  if (!request.ref.tag.empty() &&
      std::find(tags.begin(), tags.end(), request.ref.tag) == tags.end()) {
    tags.insert(tags.begin(), request.ref.tag);
  }
  if (tags.empty()) tags.push_back("default");
  // minFreeDiskMb: the free space a sandbox of the template starts with. Its files are
  // read-only layers below the sandbox's own disk, so that disk is made at least this big.
  const Template* base = builtins_.Find("base");
  const uint32_t base_disk_mb = base != nullptr ? base->disk_mb : 1024;
  if (request.min_free_disk_mb && *request.min_free_disk_mb > kMaxTemplateDiskMb) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "minFreeDiskMb: at most {} MiB (a sandbox's own disk), not {}",
                     kMaxTemplateDiskMb, *request.min_free_disk_mb);
  }
  auto disk_mb = [&](uint32_t current) {
    if (!request.min_free_disk_mb) return current;
    return std::max(base_disk_mb, *request.min_free_disk_mb);
  };
  SystemTime now = std::chrono::system_clock::now();
  ASSIGN_OR_RETURN(std::optional<TemplateRecord> existing, store_.FindTemplate(name));
  if (existing &&
      std::find(existing->names.begin(), existing->names.end(), name) == existing->names.end()) {
    return MakeError(ErrorCode::kAlreadyExists, "'{}' is a template id: choose another name", name);
  }
  if (existing) {
    if (!Changes(tenant, *existing)) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "the template name '{}' is taken by another API key's template", name);
    }
    TemplateRecord tmpl = *existing;
    if (request.cpu_count) tmpl.cpu_count = *request.cpu_count;
    if (request.memory_mb) tmpl.memory_mb = *request.memory_mb;
    tmpl.disk_mb = disk_mb(tmpl.disk_mb);
    tmpl.updated_at = now;
    RETURN_IF_ERROR(store_.UpdateTemplate(tmpl));
    BuildRecord build{.id = NewBuildId(),
                      .template_id = tmpl.id,
                      .tags = tags,
                      .cpu_count = tmpl.cpu_count,
                      .memory_mb = tmpl.memory_mb,
                      .created_at = now};
    RETURN_IF_ERROR(store_.InsertBuild(build));
    return Requested{std::move(tmpl), std::move(build)};
  }
  TemplateRecord tmpl{.id = NewSandboxId(),
                      .owner = tenant.key_id,
                      .cpu_count = request.cpu_count.value_or(2),
                      .memory_mb = request.memory_mb.value_or(1024),
                      .disk_mb = disk_mb(base_disk_mb),
                      .created_at = now,
                      .updated_at = now,
                      .names = {name}};
  BuildRecord build{.id = NewBuildId(),
                    .template_id = tmpl.id,
                    .tags = tags,
                    .cpu_count = tmpl.cpu_count,
                    .memory_mb = tmpl.memory_mb,
                    .created_at = now};
  RETURN_IF_ERROR(store_.InsertTemplate(tmpl, build));
  return Requested{std::move(tmpl), std::move(build)};
}

Result<TemplateRecord> TemplateCatalog::Find(const Tenant& tenant, std::string_view id_or_name,
                                             bool change, Hidden hidden) {
  ASSIGN_OR_RETURN(std::optional<TemplateRecord> found, store_.FindTemplate(id_or_name));
  if (!found) return NoSuchTemplate(id_or_name);
  if (!Sees(tenant, *found)) {
    if (hidden == Hidden::kForbidden) {
      return MakeError(ErrorCode::kPermissionDenied, "template '{}' belongs to another API key",
                       id_or_name);
    }
    return NoSuchTemplate(id_or_name);
  }
  if (change && !Changes(tenant, *found)) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "template '{}' is another API key's: it can be used, not changed", id_or_name);
  }
  return *found;
}

Result<BuildRecord> TemplateCatalog::FindBuild(const Tenant& tenant, std::string_view template_id,
                                               std::string_view build_id) {
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, template_id));
  ASSIGN_OR_RETURN(std::optional<BuildRecord> build,
                   IsBuildId(build_id) ? store_.GetBuild(build_id)
                                       : Result<std::optional<BuildRecord>>(std::nullopt));
  if (!build || build->template_id != tmpl.id) {
    return MakeError(ErrorCode::kNotFound, "build '{}' of template '{}' not found", build_id,
                     template_id);
  }
  return *build;
}

Result<BuildRecord> TemplateCatalog::ResolveBuild(const Tenant& tenant,
                                                  const protocol::TemplateRef& ref) {
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, ref.name));
  const std::string tag = ref.tag.empty() ? "default" : ref.tag;
  ASSIGN_OR_RETURN(std::vector<TagRecord> tags, store_.TemplateTags(tmpl.id));
  for (const TagRecord& record : tags) {
    if (record.tag != tag) continue;
    ASSIGN_OR_RETURN(std::optional<BuildRecord> build, store_.GetBuild(record.build_id));
    if (build && build->status == BuildStatus::kReady) return *build;
  }
  if (ref.tag.empty()) {
    return MakeError(ErrorCode::kNotFound, "template '{}' has no ready build yet", ref.name);
  }
  return MakeError(ErrorCode::kNotFound, "template '{}' has no tag '{}'", ref.name, ref.tag);
}

Result<std::shared_ptr<const Template>> TemplateCatalog::Resolve(const Tenant& tenant,
                                                                 std::string_view text) {
  if (const Template* builtin = builtins_.Find(std::string(text))) {
    return std::make_shared<const Template>(*builtin);
  }
  ASSIGN_OR_RETURN(protocol::TemplateRef ref, protocol::ParseTemplateRef(text));
  if (const Template* builtin = builtins_.Find(ref.name); builtin && ref.tag.empty()) {
    return std::make_shared<const Template>(*builtin);
  }
  // A create's path: the store's lookups (a template, its tags, a build, its result)
  // are kept per name until a template, build or tag changes; the key's right to see
  // the template is checked every time.
  const uint64_t generation = store_.TemplateGeneration();
  {
    std::lock_guard lock(resolved_mutex_);
    auto it = resolved_.find(text);
    if (it != resolved_.end() && it->second.generation == generation) {
      if (!Sees(tenant, it->second.record)) return NoSuchTemplate(ref.name);
      return it->second.tmpl;
    }
  }
  ASSIGN_OR_RETURN(BuildRecord build, ResolveBuild(tenant, ref));
  ASSIGN_OR_RETURN(TemplateRecord record, Find(tenant, ref.name));
  ASSIGN_OR_RETURN(BuildResult result, ParseBuildResult(build.result));
  ASSIGN_OR_RETURN(std::shared_ptr<Template> tmpl, TemplateFor(result));
  tmpl->id = record.id;
  tmpl->build_id = build.id;
  tmpl->alias = ref.name;
  tmpl->cpu_count = build.cpu_count;
  tmpl->memory_mb = build.memory_mb;
  if (record.disk_mb != 0) tmpl->disk_mb = record.disk_mb;
  std::shared_ptr<const Template> resolved(std::move(tmpl));
  std::lock_guard lock(resolved_mutex_);
  if (resolved_.size() >= kMaxResolved) resolved_.clear();
  resolved_.insert_or_assign(std::string(text), Resolved{generation, record, resolved});
  return resolved;
}

Result<std::shared_ptr<Template>> TemplateCatalog::TemplateFor(const BuildResult& result) const {
  const Template* base = result.base == kImageBase ? &builtins_.ImageBase()
                                                    : builtins_.Find(result.base);
  if (base == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "a template stands on '{}', which this isoboxd does not have", result.base);
  }
  auto tmpl = std::make_shared<Template>(*base);
  tmpl->store_layers.clear();
  for (const std::string& layer : result.layers) {
    tmpl->store_layers.push_back(layers_dir_ / layer);
  }
  tmpl->env = result.env;
  tmpl->user = result.user;
  tmpl->workdir = result.workdir;
  tmpl->start_cmd = result.start_cmd;
  tmpl->ready_cmd = result.ready_cmd;
  tmpl->shell = result.shell;
  return tmpl;
}

Result<BuildResult> TemplateCatalog::ResultOf(const Tenant& tenant, std::string_view text) {
  if (const Template* builtin = builtins_.Find(std::string(text))) {
    return BuiltinResult(*builtin);
  }
  ASSIGN_OR_RETURN(protocol::TemplateRef ref, protocol::ParseTemplateRef(text));
  if (const Template* builtin = builtins_.Find(ref.name); builtin && ref.tag.empty()) {
    return BuiltinResult(*builtin);
  }
  ASSIGN_OR_RETURN(BuildRecord build, ResolveBuild(tenant, ref));
  return ParseBuildResult(build.result);
}

Result<std::vector<TemplateRecord>> TemplateCatalog::List(const Tenant& tenant) {
  if (tenant.admin) return store_.ListTemplates(std::nullopt);
  return store_.ListTemplates(tenant.key_id);
}

Result<std::vector<BuildRecord>> TemplateCatalog::Builds(const TemplateRecord& tmpl) {
  return store_.BuildsOf(tmpl.id);
}

Result<std::vector<std::string>> TemplateCatalog::Delete(const Tenant& tenant,
                                                         std::string_view id_or_name) {
  if (IsBuiltin(id_or_name)) {
    return MakeError(ErrorCode::kPermissionDenied, "'{}' is a built-in template", id_or_name);
  }
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, id_or_name, /*change=*/true));
  ASSIGN_OR_RETURN(std::vector<std::string> builds, store_.DeleteTemplate(tmpl.id));
  Changed(tmpl.id);
  return builds;
}

Status TemplateCatalog::SetPublic(const Tenant& tenant, std::string_view id_or_name,
                                  bool is_public) {
  if (IsBuiltin(id_or_name)) {
    return MakeError(ErrorCode::kPermissionDenied, "'{}' is a built-in template", id_or_name);
  }
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, id_or_name, /*change=*/true));
  tmpl.is_public = is_public;
  tmpl.updated_at = std::chrono::system_clock::now();
  return store_.UpdateTemplate(tmpl);
}

Result<std::string> TemplateCatalog::AssignTags(const Tenant& tenant,
                                                const protocol::TagAssignment& request) {
  if (IsBuiltin(request.target.name)) {
    return MakeError(ErrorCode::kPermissionDenied, "'{}' is a built-in template",
                     request.target.name);
  }
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, request.target.name, /*change=*/true));
  ASSIGN_OR_RETURN(BuildRecord build, ResolveBuild(tenant, request.target));
  RETURN_IF_ERROR(
      store_.AssignTags(tmpl.id, build.id, request.tags, std::chrono::system_clock::now()));
  Changed(tmpl.id);
  return build.id;
}

Status TemplateCatalog::RemoveTags(const Tenant& tenant, const protocol::TagRemoval& request) {
  if (IsBuiltin(request.name)) {
    return MakeError(ErrorCode::kPermissionDenied, "'{}' is a built-in template", request.name);
  }
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, request.name, /*change=*/true));
  RETURN_IF_ERROR(store_.RemoveTags(tmpl.id, request.tags));
  Changed(tmpl.id);
  return Ok();
}

Result<std::vector<TagRecord>> TemplateCatalog::Tags(const Tenant& tenant,
                                                     std::string_view id_or_name) {
  ASSIGN_OR_RETURN(TemplateRecord tmpl, Find(tenant, id_or_name));
  return store_.TemplateTags(tmpl.id);
}

}  // namespace isobox::server
