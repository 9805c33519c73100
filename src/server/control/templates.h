// Templates: an ordered set of read-only layers plus defaults. The built-in `base` is
// derived from the host; `code-interpreter-v1` is `base` plus the interpreter defaults.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "base/result.h"
#include "server/control/usr_masks.h"

namespace isobox::server {

struct Template {
  std::string id;
  std::filesystem::path root_layer;
  std::filesystem::path usr_layer;
  // Hides what only some host users may read under usr_layer (null: nothing to hide).
  std::shared_ptr<const UsrMask> usr_mask;
  uint32_t cpu_count = 2;
  uint32_t memory_mb = 1024;
  uint32_t disk_mb = 1024;
  uint64_t pids_max = 1024;
  bool interpreter = false;  // runs isobox-interpreter (E2B port 49999)
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
  const std::map<std::string, Template>& All() const { return templates_; }

 private:
  std::map<std::string, Template> templates_;
};

}  // namespace isobox::server
