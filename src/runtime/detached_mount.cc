#include "runtime/detached_mount.h"

#include <fcntl.h>
#include <sys/mount.h>

#include <string>

namespace isobox::runtime {

Result<UniqueFd> CloneTree(const std::filesystem::path& path, const CloneOptions& options) {
  UniqueFd tree(
      ::open_tree(AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (!tree) return SysError("open_tree {}", path.string());
  struct mount_attr attr {};
  // SECURITY: layers shared with the host are never writable through this mount, and
  // setuid bits or device nodes in them have no effect inside a sandbox.
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (options.read_only) attr.attr_set |= MOUNT_ATTR_RDONLY;
  if (options.idmap_userns_fd >= 0) {
    attr.attr_set |= MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<uint64_t>(options.idmap_userns_fd);
  }
  if (::mount_setattr(tree.Get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
    return SysError("mount_setattr {}", path.string());
  }
  return tree;
}

Result<UniqueFd> MakeOverlay(const std::vector<int>& lowers, const std::filesystem::path& upper,
                             const std::filesystem::path& work) {
  UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) return SysError("fsopen overlay");
  std::string lowerdir;
  for (int fd : lowers) {
    if (!lowerdir.empty()) lowerdir += ':';
    lowerdir += "/proc/self/fd/" + std::to_string(fd);
  }
  auto set = [&](const char* key, const std::string& value) -> Status {
    if (::fsconfig(fs.Get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0) {
      return SysError("overlay {}={}", key, value);
    }
    return Ok();
  };
  RETURN_IF_ERROR(set("lowerdir", lowerdir));
  RETURN_IF_ERROR(set("upperdir", upper.string()));
  RETURN_IF_ERROR(set("workdir", work.string()));
  if (::fsconfig(fs.Get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    return SysError("create overlay upper {}", upper.string());
  }
  UniqueFd mount(::fsmount(fs.Get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!mount) return SysError("fsmount overlay upper {}", upper.string());
  return mount;
}

}  // namespace isobox::runtime
