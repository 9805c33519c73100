// Templates: an ordered set of read-only layers plus defaults. The built-in `base` is
// derived from the host; `code-interpreter-v1` is `base` plus the interpreter defaults.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "base/result.h"

namespace isobox::server {

struct Template {
  std::string id;
  std::filesystem::path root_layer;
  std::filesystem::path usr_layer;
  uint32_t cpu_count = 2;
  uint32_t memory_mb = 1024;
  uint32_t disk_mb = 1024;
  uint64_t pids_max = 1024;
  bool interpreter = false;  // runs isobox-interpreter (E2B port 49999)
};

class TemplateStore {
 public:
  // Prepares the built-in templates under <state_dir>/templates, building the base layer
  // when it is missing or from an older layout. `disk_mb`: their writable disk size.
  static Result<TemplateStore> Open(const std::filesystem::path& state_dir,
                                    uint32_t disk_mb = 1024);

  // Looks a template up by id or alias.
  const Template* Find(const std::string& id) const;
  const std::map<std::string, Template>& All() const { return templates_; }

 private:
  std::map<std::string, Template> templates_;
};

}  // namespace isobox::server
