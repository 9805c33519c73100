#include "server/control/templates.h"

#include <fstream>
#include <sstream>

#include "base/log.h"
#include "runtime/rootfs.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

std::string ReadSmallFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Builds into a scratch directory and renames it into place, so a crash never leaves a
// half-built layer that looks complete.
Status EnsureBaseLayer(const fs::path& dir) {
  fs::path layer = dir / "layer";
  fs::path version_file = dir / "VERSION";
  if (fs::is_directory(layer) && ReadSmallFile(version_file) == runtime::BaseLayerVersion()) {
    return Ok();
  }
  LOG_INFO("building the base template layer in {}", layer.string());
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  fs::path scratch = dir / "layer.new";
  fs::remove_all(scratch, ec);
  RETURN_IF_ERROR(WithContext(runtime::BuildBaseLayer(scratch), "build base layer"));
  fs::remove_all(layer, ec);
  fs::rename(scratch, layer, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", scratch.string(), ec.message());
  std::ofstream(version_file) << runtime::BaseLayerVersion();
  return Ok();
}

}  // namespace

Result<TemplateStore> TemplateStore::Open(const fs::path& state_dir, uint32_t disk_mb) {
  fs::path base_dir = state_dir / "templates" / "base";
  RETURN_IF_ERROR(EnsureBaseLayer(base_dir));
  TemplateStore store;
  Template base{.id = "base", .root_layer = base_dir / "layer", .usr_layer = "/usr"};
  base.disk_mb = disk_mb;
  store.templates_["base"] = base;
  Template interpreter = base;
  interpreter.id = "code-interpreter-v1";
  interpreter.interpreter = true;
  store.templates_[interpreter.id] = interpreter;
  return store;
}

const Template* TemplateStore::Find(const std::string& id) const {
  auto it = templates_.find(id);
  return it == templates_.end() ? nullptr : &it->second;
}

}  // namespace isobox::server
