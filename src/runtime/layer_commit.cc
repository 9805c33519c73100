#include "runtime/layer_commit.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/sys/syscalls.h"
#include "base/unique_fd.h"

namespace isobox::runtime {
namespace {

constexpr uint32_t kRangeSize = 65536;
constexpr uint32_t kNobody = 65534;
constexpr std::string_view kOverlayXattrs = "trusted.overlay.";
constexpr std::string_view kOpaqueXattr = "trusted.overlay.opaque";

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

bool ValidRange(uint32_t base) { return uint64_t{base} + kRangeSize <= uint64_t{UINT32_MAX}; }

// `name` in `dir`, resolved without following anything: a symlink is opened as itself
// (O_PATH), a mount point or a name that leaves `dir` fails.
Result<UniqueFd> OpenBeneath(int dir, const char* name, uint64_t flags, const std::string& path) {
  struct open_how how {};
  how.flags = flags | O_NOFOLLOW | O_CLOEXEC;
  // SECURITY: the tree was written by sandboxed code. A symlink followed here would make
  // the chown, chmod and xattr changes below land on a host file it points to.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  UniqueFd fd(sys::Openat2(dir, name, &how, sizeof(how)));
  if (!fd) return SysError("open {}", path);
  return fd;
}

// The names in directory `dir` (not "." and ".."); more than `room`: kResourceExhausted.
Result<std::vector<std::string>> ReadNames(int dir, const std::string& path, uint64_t room,
                                           uint64_t max_files) {
  std::vector<std::string> names;
  std::vector<char> buffer(64 << 10);
  for (;;) {
    ssize_t n = ::getdents64(dir, buffer.data(), buffer.size());
    if (n < 0) return SysError("read directory {}", path);
    if (n == 0) return names;
    for (ssize_t at = 0; at < n;) {
      const auto* entry = reinterpret_cast<const struct dirent64*>(buffer.data() + at);
      at += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      if (names.size() >= room) {
        return MakeError(ErrorCode::kResourceExhausted, "layer has more than {} files", max_files);
      }
      names.emplace_back(name);
    }
  }
}

// Kinds a layer may hold. Returns whether `st` is an overlay whiteout (char 0:0).
Result<bool> Classify(const struct stat& st, const std::string& path) {
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFIFO:
      return false;
    case S_IFCHR:
      if (st.st_rdev == ::makedev(0, 0)) return true;
      [[fallthrough]];
    case S_IFBLK:
      // SECURITY: a device node in a layer would give every sandbox of the template that
      // device (were nodev ever missing), and none can come from a build step, which has no
      // CAP_MKNOD on the host: refuse the layer rather than drop the node silently.
      return MakeError(ErrorCode::kInvalidArgument, "{}: device node {}:{} in a layer", path,
                       ::major(st.st_rdev), ::minor(st.st_rdev));
    case S_IFSOCK:
      return MakeError(ErrorCode::kInvalidArgument, "{}: socket in a layer", path);
    default:
      return MakeError(ErrorCode::kInvalidArgument, "{}: unknown file type {:o}", path,
                       st.st_mode & S_IFMT);
  }
}

Result<std::string> GetXattr(const std::string& proc, const std::string& name,
                             const std::string& path) {
  for (;;) {
    ssize_t size = ::getxattr(proc.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) return SysError("{}: get xattr {}", path, name);
    std::string value(static_cast<size_t>(size), '\0');
    ssize_t got = ::getxattr(proc.c_str(), name.c_str(), value.data(), value.size());
    if (got >= 0) return value.substr(0, static_cast<size_t>(got));
    if (errno != ERANGE) return SysError("{}: get xattr {}", path, name);
  }
}

Result<std::vector<std::string>> ListXattrs(const std::string& proc, const std::string& path) {
  for (;;) {
    ssize_t size = ::listxattr(proc.c_str(), nullptr, 0);
    if (size < 0) return SysError("{}: list xattrs", path);
    std::string list(static_cast<size_t>(size), '\0');
    ssize_t got = ::listxattr(proc.c_str(), list.data(), list.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) return SysError("{}: list xattrs", path);
    std::vector<std::string> names;
    for (size_t at = 0; at < static_cast<size_t>(got);) {
      names.emplace_back(list.c_str() + at);
      at += names.back().size() + 1;
    }
    return names;
  }
}

Status RemoveXattr(const std::string& proc, const std::string& name, const std::string& path) {
  if (::removexattr(proc.c_str(), name.c_str()) < 0) {
    return SysError("{}: remove xattr {}", path, name);
  }
  return Ok();
}

class Committer {
 public:
  Committer(const LayerCommitOptions& options, dev_t dev) : options_(options), dev_(dev) {}

  Status Directory(int dir, const std::string& path, uint32_t depth);
  // Shifts the owner of the inode behind `fd` (described by `st`), cleans its xattrs and
  // restores its mode.
  Status Convert(int fd, const struct stat& st, bool whiteout, const std::string& path);
  const LayerCommitStats& stats() const { return stats_; }

 private:
  Status Visit(int fd, const struct stat& st, const std::string& path);
  Status CleanXattrs(const std::string& proc, const std::string& path);
  Status CleanOverlayXattr(const std::string& proc, const std::string& name,
                           const std::string& path);
  Status ShiftAcl(const std::string& proc, const std::string& name, const std::string& path);
  uint32_t Shift(uint32_t id) const {
    uint32_t n = id - options_.from_base;  // wraps for ids below the range
    return options_.to_base + (n < kRangeSize ? n : kNobody);
  }

  const LayerCommitOptions& options_;
  const dev_t dev_;
  LayerCommitStats stats_;
  std::unordered_set<ino_t> linked_;  // inodes with several names, converted already
};

Status Committer::Directory(int dir, const std::string& path, uint32_t depth) {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   ReadNames(dir, path, options_.max_files - stats_.files, options_.max_files));
  for (const std::string& name : names) {
    std::string child = path == "/" ? "/" + name : path + "/" + name;
    ASSIGN_OR_RETURN(UniqueFd entry, OpenBeneath(dir, name.c_str(), O_PATH, child));
    struct stat st {};
    if (::fstat(entry.Get(), &st) < 0) return SysError("stat {}", child);
    RETURN_IF_ERROR(Visit(entry.Get(), st, child));
    if (!S_ISDIR(st.st_mode)) continue;
    if (depth >= options_.max_depth) {
      return MakeError(ErrorCode::kResourceExhausted, "layer is deeper than {} directories at {}",
                       options_.max_depth, child);
    }
    ASSIGN_OR_RETURN(UniqueFd sub, OpenBeneath(entry.Get(), ".", O_RDONLY | O_DIRECTORY, child));
    entry.Reset();
    RETURN_IF_ERROR(Directory(sub.Get(), child, depth + 1));
  }
  return Ok();
}

Status Committer::Visit(int fd, const struct stat& st, const std::string& path) {
  ASSIGN_OR_RETURN(bool whiteout, Classify(st, path));
  if (st.st_dev != dev_) return MakeError(ErrorCode::kInvalidArgument, "{}: a mount", path);
  if (++stats_.files > options_.max_files) {
    return MakeError(ErrorCode::kResourceExhausted, "layer has more than {} files",
                     options_.max_files);
  }
  if (whiteout) ++stats_.whiteouts;
  // Another name of an inode done already: its owner is shifted, shifting again would
  // make it nobody's.
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && !linked_.insert(st.st_ino).second) {
    return Ok();
  }
  if (S_ISREG(st.st_mode)) {
    stats_.bytes += static_cast<uint64_t>(st.st_size);
    if (stats_.bytes > options_.max_bytes) {
      return MakeError(ErrorCode::kResourceExhausted, "layer has more than {} bytes",
                       options_.max_bytes);
    }
  }
  return Convert(fd, st, whiteout, path);
}

Status Committer::Convert(int fd, const struct stat& st, bool whiteout, const std::string& path) {
  // The inode behind `fd` itself, even an O_PATH fd of a symlink: a magic link is not
  // followed further once it has jumped.
  std::string proc = ProcFdPath(fd);
  RETURN_IF_ERROR(CleanXattrs(proc, path));
  uid_t uid = whiteout ? options_.to_base : Shift(st.st_uid);
  gid_t gid = whiteout ? options_.to_base : Shift(st.st_gid);
  // SECURITY: store layers belong to the store range only: an id left in a slot's range
  // would let that slot's processes own the file on the host, one outside any range
  // (host root, a host user) would show through no idmap but stay theirs on the host.
  if (::fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0) return SysError("{}: chown", path);
  if (S_ISLNK(st.st_mode)) return Ok();
  // SECURITY: the chown cleared setuid and setgid; this puts back the mode the sandbox
  // gave the inode, no more. The owner is now a store id, which no host process has and
  // which only a slot's idmap shows (as that slot's own id).
  if (::chmod(proc.c_str(), st.st_mode & 07777) < 0) return SysError("{}: chmod", path);
  return Ok();
}

Status Committer::CleanXattrs(const std::string& proc, const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListXattrs(proc, path));
  for (const std::string& name : names) {
    if (name.starts_with(kOverlayXattrs)) {
      RETURN_IF_ERROR(CleanOverlayXattr(proc, name, path));
    } else if (name == "security.capability") {
      // SECURITY: a file capability set in a sandbox is a v3 one naming the slot's root
      // (a host id) as the namespace root it is valid for: it must not outlive the slot.
      RETURN_IF_ERROR(RemoveXattr(proc, name, path));
      ++stats_.capabilities_removed;
    } else if (name == "system.posix_acl_access" || name == "system.posix_acl_default") {
      RETURN_IF_ERROR(ShiftAcl(proc, name, path));
    }
  }
  return Ok();
}

Status Committer::CleanOverlayXattr(const std::string& proc, const std::string& name,
                                    const std::string& path) {
  if (name == kOpaqueXattr) {
    ASSIGN_OR_RETURN(std::string value, GetXattr(proc, name, path));
    if (value == "y" || value == "x") return Ok();
  } else if (name == "trusted.overlay.redirect" || name == "trusted.overlay.metacopy") {
    // Without its lowers this entry has no contents: a redirected directory lists only
    // what the step added, a metacopy file is empty.
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{}: overlayfs {} entry: the upper depends on its lower layers", path,
                     name.substr(kOverlayXattrs.size()));
  }
  // SECURITY: origin, impure, uuid... describe the build's own lowers and upper; as a
  // lower layer's xattrs they would steer the sandboxes' overlays.
  return RemoveXattr(proc, name, path);
}

Status Committer::ShiftAcl(const std::string& proc, const std::string& name,
                           const std::string& path) {
  ASSIGN_OR_RETURN(std::string acl, GetXattr(proc, name, path));
  constexpr size_t kHeader = sizeof(posix_acl_xattr_header);
  constexpr size_t kEntry = sizeof(posix_acl_xattr_entry);
  if (acl.size() < kHeader || (acl.size() - kHeader) % kEntry != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: malformed {}", path, name);
  }
  for (size_t at = kHeader; at < acl.size(); at += kEntry) {
    posix_acl_xattr_entry entry;
    std::memcpy(&entry, acl.data() + at, kEntry);
    uint16_t tag = le16toh(entry.e_tag);
    if (tag != ACL_USER && tag != ACL_GROUP) continue;
    entry.e_id = htole32(Shift(le32toh(entry.e_id)));
    std::memcpy(acl.data() + at, &entry, kEntry);
  }
  // SECURITY: ACL entries name host ids as owners do, and are shifted the same way.
  if (::setxattr(proc.c_str(), name.c_str(), acl.data(), acl.size(), XATTR_REPLACE) < 0) {
    return SysError("{}: set {}", path, name);
  }
  return Ok();
}

Result<LayerCommitStats> Commit(const std::filesystem::path& upper,
                                const LayerCommitOptions& options) {
  if (!ValidRange(options.from_base) || !ValidRange(options.to_base) || options.to_base == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "id ranges {} -> {}: not valid store ids",
                     options.from_base, options.to_base);
  }
  UniqueFd root(::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return SysError("open");
  struct stat st {};
  if (::fstat(root.Get(), &st) < 0) return SysError("stat");
  Committer committer(options, st.st_dev);
  RETURN_IF_ERROR(committer.Convert(root.Get(), st, false, "/"));
  RETURN_IF_ERROR(committer.Directory(root.Get(), "/", 1));
  if (::syncfs(root.Get()) < 0) return SysError("syncfs");
  return committer.stats();
}

}  // namespace

Result<LayerCommitStats> CommitLayer(const std::filesystem::path& upper,
                                     const LayerCommitOptions& options) {
  return WithContext(Commit(upper, options), "commit layer " + upper.string());
}

}  // namespace isobox::runtime
