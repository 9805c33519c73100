#include "server/control/templates.h"

#include <fmt/format.h>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "base/log.h"
#include "protocol/sha256.h"
#include "runtime/rootfs.h"
#include "server/control/trusted_ca.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

std::string ReadSmallFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string HexSha256(std::string_view data) {
  std::string hex;
  for (uint8_t byte : protocol::Sha256(data)) hex += fmt::format("{:02x}", byte);
  return hex;
}

// No sandbox of an earlier run is left to use an old layer.
bool NoSandboxesLeft(const fs::path& state_dir) {
  std::error_code ec;
  return fs::is_empty(state_dir / "sandboxes", ec) || ec;
}

// Moves a replaced layer out of the way: removed when no sandbox can have it mounted,
// else kept below old/ (removing a lower layer's files under a mounted overlay would take
// them from the sandboxes using it) until a start without sandboxes.
Status Retire(const fs::path& dir, const fs::path& layer, bool collect) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(layer, ec))) return Ok();
  if (collect) {
    fs::remove_all(layer, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "remove {}: {}", layer.string(), ec.message());
    return Ok();
  }
  fs::create_directories(dir / "old", ec);
  for (int n = 0;; ++n) {
    fs::path aside = dir / "old" / std::to_string(n);
    if (fs::exists(fs::symlink_status(aside, ec))) continue;
    fs::rename(layer, aside, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", layer.string(), ec.message());
    return Ok();
  }
}

// Builds into a scratch directory and renames it into place, so a crash never leaves a
// half-built layer that looks complete. The hash of the sources is taken before the
// build: a host file changed during it makes the next start build again.
Status EnsureBaseLayer(const fs::path& dir, const fs::path& host_root, bool collect,
                       const std::string& trusted_ca_pem) {
  fs::path layer = dir / "layer";
  fs::path hash_file = dir / "sources.sha256";
  std::error_code ec;
  if (collect) fs::remove_all(dir / "old", ec);
  ASSIGN_OR_RETURN(std::string sources, runtime::BaseLayerSources(host_root));
  if (!trusted_ca_pem.empty()) sources += "\ntrusted-ca " + HexSha256(trusted_ca_pem);
  std::string hash = HexSha256(sources);
  if (fs::is_directory(layer, ec) && ReadSmallFile(hash_file) == hash) return Ok();
  LOG_INFO("building the base template layer in {}", layer.string());
  fs::create_directories(dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  fs::path scratch = dir / "layer.new";
  fs::remove_all(scratch, ec);
  RETURN_IF_ERROR(WithContext(runtime::BuildBaseLayer(scratch, host_root), "build base layer"));
  if (!trusted_ca_pem.empty()) {
    RETURN_IF_ERROR(WithContext(AddTrustedCa(scratch, trusted_ca_pem), "build base layer"));
  }
  RETURN_IF_ERROR(Retire(dir, layer, collect));
  fs::rename(scratch, layer, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", scratch.string(), ec.message());
  fs::path hash_scratch = dir / "sources.sha256.new";
  std::ofstream(hash_scratch) << hash;
  fs::rename(hash_scratch, hash_file, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", hash_file.string(), ec.message());
  fs::remove(dir / "VERSION", ec);  // the stamp of layouts before base-layer-2
  return Ok();
}

// The root layer of templates built from images: only the mount points a sandbox needs
// (the image's own tree is a store layer above it and wins where both have a name).
// Owned by host root, mapped to the sandbox's root like the base layer.
constexpr std::string_view kImageRootVersion = "image-root-1";

Status EnsureImageRootLayer(const fs::path& dir) {
  fs::path layer = dir / "layer";
  if (ReadSmallFile(dir / "VERSION") == kImageRootVersion) return Ok();
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::path scratch = dir / "layer.new";
  fs::remove_all(scratch, ec);
  struct Dir {
    const char* name;
    mode_t mode;
  };
  for (Dir d : {Dir{"", 0755}, Dir{".isobox", 0755}, Dir{"proc", 0555}, Dir{"dev", 0755},
                Dir{"sys", 0555}, Dir{"tmp", 01777}, Dir{"etc", 0755}, Dir{"root", 0700},
                Dir{"home", 0755}}) {
    fs::path path = scratch / d.name;
    if (::mkdir(path.c_str(), d.mode) < 0 || ::chmod(path.c_str(), d.mode) < 0) {
      return SysError("mkdir {}", path.string());
    }
  }
  fs::remove_all(layer, ec);
  fs::rename(scratch, layer, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", scratch.string(), ec.message());
  std::ofstream(dir / "VERSION") << kImageRootVersion;
  return Ok();
}

}  // namespace

Result<TemplateStore> TemplateStore::Open(const fs::path& state_dir, uint32_t disk_mb) {
  return Open(state_dir, TemplateOptions{.disk_mb = disk_mb});
}

Result<TemplateStore> TemplateStore::Open(const fs::path& state_dir,
                                          const TemplateOptions& options) {
  fs::path base_dir = state_dir / "templates" / "base";
  bool collect = NoSandboxesLeft(state_dir);
  RETURN_IF_ERROR(EnsureBaseLayer(base_dir, options.host_root, collect, options.trusted_ca_pem));
  ASSIGN_OR_RETURN(std::shared_ptr<UsrMask> usr_mask,
                   UsrMask::Open(base_dir / "usr-mask", options.usr, collect));
  TemplateStore store;
  Template base{.id = "base",
                .root_layer = base_dir / "layer",
                .usr_layer = options.usr.usr,
                .usr_mask = std::move(usr_mask)};
  base.disk_mb = options.disk_mb;
  base.identity = ReadSmallFile(base_dir / "sources.sha256") + ";" + options.usr.usr.string();
  store.templates_["base"] = base;
  Template interpreter = base;
  interpreter.id = "code-interpreter-v1";
  interpreter.interpreter = true;
  store.templates_[interpreter.id] = interpreter;
  // Templates from images stand on their image: no host /usr, no host /etc.
  fs::path image_dir = state_dir / "templates" / "image-root";
  RETURN_IF_ERROR(WithContext(EnsureImageRootLayer(image_dir), "image root layer"));
  store.image_base_ = Template{.id = std::string(kImageBase), .root_layer = image_dir / "layer"};
  store.image_base_.disk_mb = options.disk_mb;
  store.image_base_.identity = std::string(kImageRootVersion);
  return store;
}

const Template* TemplateStore::Find(const std::string& id) const {
  auto it = templates_.find(id);
  return it == templates_.end() ? nullptr : &it->second;
}

}  // namespace isobox::server
