// The catalog of user-built templates: names, tenancy, builds, tags, and which build a
// create's templateID means. Rules (E2B's, control/template_catalog.cc):
//   - a name is global; a template can have several (E2B's aliases); `name:tag` picks a
//     tag, `name` the tag `default`; a template id works wherever a name does;
//   - a template belongs to the API key that requested it; another key sees it only when
//     it is public (and then cannot change it); an admin key sees and changes every one;
//   - a build moves its tags (default: `default`) only once it is ready, so a failed or
//     interrupted build never changes what a name means;
//   - the built-in templates (`base`, `code-interpreter-v1`) are public and read-only.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "protocol/template_build.h"
#include "server/control/templates.h"
#include "server/control/tenancy.h"
#include "server/store/store.h"

namespace isobox::server {

// What a ready build gives its sandboxes, and the next build's starting point
// (template_builds.result).
struct BuildResult {
  // The built-in template the layers stand on; kImageBase (templates.h) for an image's
  // (its tree is the bottom store layer).
  std::string base = "base";
  std::vector<std::string> layers{};  // store layer keys above it, top first
  std::vector<std::string> steps{};   // every step's layer id, first to last
  std::string chain{};                // the cache key of the last step (layer_store.h)
  std::map<std::string, std::string> env{};
  std::string user = "user";
  std::string workdir{};  // empty: the user's home
  std::string start_cmd{};
  std::string ready_cmd{};
  std::string shell = "/bin/bash";  // what runs RUN steps and start/ready commands
};
std::string BuildResultJson(const BuildResult& result);
Result<BuildResult> ParseBuildResult(std::string_view text);

// The largest disk a template's minFreeDiskMb may ask its sandboxes to start with (MiB).
inline constexpr uint32_t kMaxTemplateDiskMb = 65536;

// The two kinds of answer about another key's private template: E2B's alias lookup says
// 403 (it exists), everything else 404 (as if it did not).
enum class Hidden { kNotFound, kForbidden };

class TemplateCatalog {
 public:
  // `layers_dir`: the layer store (<state>/layers), where a build's layers live.
  TemplateCatalog(Store& store, const TemplateStore& builtins, std::filesystem::path layers_dir)
      : store_(store), builtins_(builtins), layers_dir_(std::move(layers_dir)) {}

  struct Requested {
    TemplateRecord tmpl;
    BuildRecord build;
  };
  // POST /v3/templates: a new template with a waiting build, or a new waiting build of
  // the caller's template of that name. kAlreadyExists when the name is another key's
  // or a built-in's.
  Result<Requested> RequestBuild(const Tenant& tenant, const protocol::TemplateRequest& request);

  // A template the caller sees, by id or name (no tag). `change`: the caller must also be
  // allowed to change it (its owner or an admin key).
  Result<TemplateRecord> Find(const Tenant& tenant, std::string_view id_or_name,
                              bool change = false, Hidden hidden = Hidden::kNotFound);
  bool IsBuiltin(std::string_view name) const { return builtins_.Find(std::string(name)); }
  const TemplateStore& Builtins() const { return builtins_; }

  // A build of `template_id` (id or name) the caller sees.
  Result<BuildRecord> FindBuild(const Tenant& tenant, std::string_view template_id,
                                std::string_view build_id);
  // The ready build a reference means: "name", "name:tag" or a template id.
  Result<BuildRecord> ResolveBuild(const Tenant& tenant, const protocol::TemplateRef& ref);
  // What a create's templateID means: a built-in, or a user template's ready build as a
  // Template a sandbox can start from.
  Result<std::shared_ptr<const Template>> Resolve(const Tenant& tenant, std::string_view ref);
  // A Template for a build result (its base's, with the result's layers and defaults).
  Result<std::shared_ptr<Template>> TemplateFor(const BuildResult& result) const;
  // The build result a fromTemplate reference stands for (built-ins included).
  Result<BuildResult> ResultOf(const Tenant& tenant, std::string_view ref);

  Result<std::vector<TemplateRecord>> List(const Tenant& tenant);
  Result<std::vector<BuildRecord>> Builds(const TemplateRecord& tmpl);
  // Forgets the template; its running sandboxes keep running. Returns its build ids.
  Result<std::vector<std::string>> Delete(const Tenant& tenant, std::string_view id_or_name);
  Status SetPublic(const Tenant& tenant, std::string_view id_or_name, bool is_public);

  // POST /templates/tags: the target's build gets the tags. Returns the build id.
  Result<std::string> AssignTags(const Tenant& tenant, const protocol::TagAssignment& request);
  Status RemoveTags(const Tenant& tenant, const protocol::TagRemoval& request);
  Result<std::vector<TagRecord>> Tags(const Tenant& tenant, std::string_view id_or_name);

  Store& store() { return store_; }

  // Told after what a name means may have changed: a build became ready (TemplateBuilder
  // calls Changed), tags were assigned or removed, the template was deleted. The warm
  // pools of user templates listen (Registry::TemplateChanged). Set before serving; runs
  // on the changing thread and may block.
  using ChangeObserver = std::function<void(const std::string& template_id)>;
  void SetChangeObserver(ChangeObserver observer) { observer_ = std::move(observer); }
  void Changed(const std::string& template_id) const {
    if (observer_) observer_(template_id);
  }

 private:
  // What Resolve found for a name, independent of the key that asked (whose visibility
  // is checked at every lookup), while the store's template generation stays the same.
  struct Resolved {
    uint64_t generation = 0;
    TemplateRecord record;
    std::shared_ptr<const Template> tmpl;
  };

  Store& store_;
  const TemplateStore& builtins_;
  std::filesystem::path layers_dir_{};
  ChangeObserver observer_{};
  std::mutex resolved_mutex_;
  std::map<std::string, Resolved, std::less<>> resolved_;
};

// A build id: a random (version 4) UUID, lower case.
std::string NewBuildId();
bool IsBuildId(std::string_view text);

}  // namespace isobox::server
