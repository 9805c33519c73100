#include "runtime/state_tmpfs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "runtime/criu.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Whether `dir` is the root of a mount (not a directory on its parent's filesystem).
Result<bool> IsMountRoot(const fs::path& dir) {
  struct statx st {};
  if (::statx(AT_FDCWD, dir.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &st) < 0) {
    return SysError("statx {}", dir.string());
  }
  if ((st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) == 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "statx {}: this kernel does not say what is a mount root", dir.string());
  }
  return (st.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

bool IsEmptyDir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_empty(dir, ec) && !ec;
}

}  // namespace

bool StateTmpfs::IsTmpfs(const fs::path& dir) {
  struct statfs st {};
  return ::statfs(dir.c_str(), &st) == 0 && st.f_type == TMPFS_MAGIC;
}

Result<StateTmpfs> StateTmpfs::Mount(const fs::path& dir) {
  ASSIGN_OR_RETURN(bool mount_root, IsMountRoot(dir));
  if (IsTmpfs(dir)) {
    // Ours, left by an isoboxd that kept its sandboxes; or a directory on a tmpfs anyway
    // (a state directory under /run or a tmpfs /tmp), which is not ours to unmount.
    return mount_root ? StateTmpfs(dir) : StateTmpfs();
  }
  if (!IsEmptyDir(dir)) {
    LOG_WARN("{} holds sandboxes of an earlier isoboxd: kept on the host's filesystem",
             dir.string());
    return StateTmpfs();
  }
  // SECURITY: only host root can enter; nothing on it can be executed, be setuid or be a
  // device. The sandboxes' root mounts are attached on their own directories here, inside
  // each sandbox's own mount namespace, where none of these flags applies to them.
  if (::mount("isobox-state", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") <
      0) {
    return SysError("mount a tmpfs on {}", dir.string());
  }
  return StateTmpfs(dir);
}

StateTmpfs::~StateTmpfs() {
  if (dir_.empty()) return;
  // CRIU's cache of kernel features (runtime/criu.h CriuDump::cache_dir) is no sandbox.
  ::unlink((dir_ / kCriuCacheFile).c_str());
  if (!IsEmptyDir(dir_)) return;  // sandboxes kept: their sockets stay where they are
  if (::umount2(dir_.c_str(), UMOUNT_NOFOLLOW) < 0) {
    LOG_WARN("unmount {}: {}", dir_.string(), std::strerror(errno));
  }
}

}  // namespace isobox::runtime
