// Templates: an ordered set of read-only layers plus defaults. The built-in `base` is
// derived from the host; `code-interpreter-v1` is `base` plus the interpreter defaults.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "server/control/usr_masks.h"

namespace isobox::server {

// BuildResult::base of templates built from an image (TemplateStore::ImageBase).
inline constexpr std::string_view kImageBase = "image";

struct Template {
  std::string id{};
  std::filesystem::path root_layer{};
  std::filesystem::path usr_layer{};
  // Hides what only some host users may read under usr_layer (null: nothing to hide).
  std::shared_ptr<const UsrMask> usr_mask{};
  uint32_t cpu_count = 2;
  uint32_t memory_mb = 1024;
  uint32_t disk_mb = 1024;
  uint64_t pids_max = 1024;
  bool interpreter = false;  // runs isobox-interpreter (E2B port 49999)
  // What the built-in's layers are made of (the base layer's sources hash and the /usr
  // it stands on): the start of the cache key chain of templates built on it.
  std::string identity{};

  // A user-built template's build (control/template_catalog.h); empty for the built-ins.
  std::string build_id{};
  std::string alias{};  // the name a create used, shown as the sandbox's alias
  // Store layer directories (their root/ and usr/ trees) above root_layer and the /usr
  // mask, top first (control/layer_store.h).
  std::vector<std::filesystem::path> store_layers{};
  std::map<std::string, std::string> env{};  // the template's ENV, below the create's own
  std::string user = "user";                 // commands' default user
  std::string workdir{};                     // commands' default directory; empty: the home
  std::string start_cmd{};                   // started at every sandbox start (empty: none)
  std::string ready_cmd{};                   // a create answers once it exits 0 (empty: none)
  std::string shell = "/bin/bash";           // runs start_cmd and ready_cmd (sh: images without bash)
};

struct TemplateOptions {
  uint32_t disk_mb = 1024;  // the built-in templates' writable disk size
  // The host the built-in templates come from: its /etc and top-level links ("/" but in
  // tests), its /usr and what keeps the /usr mask current.
  std::filesystem::path host_root = "/";
  UsrMaskOptions usr{};
  // A CA certificate (PEM) the base layer's trust store gets (control/trusted_ca.h):
  // isoboxd's egress CA. Empty: none.
  std::string trusted_ca_pem{};
};

class TemplateStore {
 public:
  // Prepares the built-in templates under <state_dir>/templates: builds the base layer
  // when it is missing or the host files it is made from have changed
  // (runtime::BaseLayerSources), and the /usr mask (usr_masks.h). A layer that is
  // replaced is removed only when <state_dir>/sandboxes is empty: kept sandboxes of an
  // earlier run may still have it mounted, and it then waits for a start without them.
  static Result<TemplateStore> Open(const std::filesystem::path& state_dir,
                                    uint32_t disk_mb = 1024);
  static Result<TemplateStore> Open(const std::filesystem::path& state_dir,
                                    const TemplateOptions& options);

  // Looks a template up by id or alias.
  const Template* Find(const std::string& id) const;
  // What templates built from an image stand on (BuildResult::base kImageBase): a root
  // layer of mount points only, no /usr layer. Never a template of its own.
  const Template& ImageBase() const { return image_base_; }
  const std::map<std::string, Template>& All() const { return templates_; }

 private:
  std::map<std::string, Template> templates_{};
  Template image_base_{};
};

}  // namespace isobox::server
