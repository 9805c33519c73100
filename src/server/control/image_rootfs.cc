#include "server/control/image_rootfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/printable.h"
#include "base/sys/syscalls.h"
#include "base/unique_fd.h"

namespace isobox::server {
namespace {

constexpr uint64_t kRangeSize = 65536;

// The shown form of a path below the root ("/" for the root itself).
std::string Shown(const std::string& relative) {
  return "/" + Printable(relative == "." ? "" : relative, 512);
}

// Directory `relative` of the tree below `root`, opened without following anything.
Result<UniqueFd> OpenDirectory(int root, const std::string& relative) {
  struct open_how how {};
  how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  // SECURITY: the tree was written from an untrusted image. A symlink followed here (or a
  // mount crossed) would make the walk check, and pass, some other tree than the one the
  // sandboxes will see.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  UniqueFd fd(sys::Openat2(root, relative.c_str(), &how, sizeof(how)));
  if (!fd) return SysError("open {}", Shown(relative));
  return fd;
}

Status CheckEntry(const struct stat& st, const std::string& relative, uint32_t owner_base) {
  switch (st.st_mode & S_IFMT) {
    case S_IFCHR:
    case S_IFBLK:
      // SECURITY: a device node in an image layer would give every sandbox of the template
      // that device (where a mount lacks nodev), /dev/mem or a disk. No image needs one:
      // OCI whiteouts are names, and the sandbox's /dev is made by the runtime.
      return MakeError(ErrorCode::kInvalidArgument, "{}: {} device {}:{} in the image",
                       Shown(relative), S_ISCHR(st.st_mode) ? "character" : "block",
                       ::major(st.st_rdev), ::minor(st.st_rdev));
    case S_IFSOCK:
      // SECURITY: tar cannot express a socket; one here means umoci made something the
      // scan did not describe. Refuse rather than guess what else it made.
      return MakeError(ErrorCode::kInvalidArgument, "{}: socket in the image", Shown(relative));
    default:
      break;
  }
  // SECURITY: image files belong to the layer store's range only. An owner outside it
  // would be a host user (or host root) inside every sandbox of the template: a setuid
  // binary of host root, files of another sandbox's range.
  uint64_t first = owner_base;
  if (st.st_uid < first || st.st_uid >= first + kRangeSize || st.st_gid < first ||
      st.st_gid >= first + kRangeSize) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "{}: owner {}:{} is outside the image's ids {}-{}", Shown(relative), st.st_uid,
                     st.st_gid, first, first + kRangeSize - 1);
  }
  return Ok();
}

// The names in `dir` (not "." and "..").
Result<std::vector<std::string>> ReadNames(int dir, const std::string& relative) {
  std::vector<std::string> names;
  std::vector<char> buffer(64 << 10);
  for (;;) {
    ssize_t n = ::getdents64(dir, buffer.data(), buffer.size());
    if (n < 0) return SysError("read directory {}", Shown(relative));
    if (n == 0) return names;
    for (ssize_t at = 0; at < n;) {
      const auto* entry = reinterpret_cast<const struct dirent64*>(buffer.data() + at);
      at += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
  }
}

}  // namespace

Result<ImageRootfsStats> CheckImageRootfs(const std::filesystem::path& rootfs,
                                          uint32_t owner_base) {
  if (uint64_t{owner_base} + kRangeSize > uint64_t{UINT32_MAX}) {
    return MakeError(ErrorCode::kInvalidArgument, "owner base {} is not a range of valid ids",
                     owner_base);
  }
  UniqueFd root(::open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return SysError("open {}", rootfs.string());
  struct stat st {};
  if (::fstat(root.Get(), &st) < 0) return SysError("stat {}", rootfs.string());
  RETURN_IF_ERROR(CheckEntry(st, ".", owner_base));
  ImageRootfsStats stats;
  // Directories still to read, relative to the root; each is opened from the root, so the
  // walk holds two fds whatever the depth.
  std::vector<std::string> pending = {"."};
  while (!pending.empty()) {
    std::string relative = std::move(pending.back());
    pending.pop_back();
    ASSIGN_OR_RETURN(UniqueFd dir, OpenDirectory(root.Get(), relative));
    ASSIGN_OR_RETURN(std::vector<std::string> names, ReadNames(dir.Get(), relative));
    for (const std::string& name : names) {
      std::string child = relative == "." ? name : relative + "/" + name;
      if (::fstatat(dir.Get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        return SysError("stat {}", Shown(child));
      }
      RETURN_IF_ERROR(CheckEntry(st, child, owner_base));
      ++stats.entries;
      if (S_ISREG(st.st_mode)) stats.bytes += static_cast<uint64_t>(st.st_size);
      if (S_ISDIR(st.st_mode)) pending.push_back(std::move(child));
    }
  }
  return stats;
}

}  // namespace isobox::server
