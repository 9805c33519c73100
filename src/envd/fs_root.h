// The sandbox root as seen by the files and filesystem APIs. Every path those APIs take
// is resolved from an fd of the root with openat2(RESOLVE_IN_ROOT): ".." and symlinks
// (absolute or relative, at any depth) are clamped to the root, exactly as if the
// process had chrooted there, so no request can name a file outside it. Inside a
// sandbox the root is "/"; host-side tests run envd with a temporary directory as root.
//
// Paths here are "sandbox paths": absolute and lexically clean (paths.h ResolvePath).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::envd {

class FsRoot {
 public:
  // Opens `host_path` (a directory). "/" in a sandbox.
  static Result<FsRoot> Open(const std::string& host_path);

  FsRoot() = default;
  FsRoot(FsRoot&&) = default;
  FsRoot& operator=(FsRoot&&) = default;

  // openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS). O_CLOEXEC is added.
  // Add O_NOFOLLOW to refuse a symlink as the last component.
  Result<UniqueFd> Open(std::string_view path, int flags, mode_t mode = 0) const;

  // A regular file at `path` opened with `flags` (O_RDONLY, O_RDWR), never anything else
  // (regular_file.h): a directory, a FIFO or a device is kInvalidArgument, and its open
  // neither blocks nor runs a driver. Symlinks are followed inside the root.
  Result<UniqueFd> OpenRegular(std::string_view path, int flags) const;

  // For writing the whole file: an existing regular file is opened with O_TRUNC, a
  // missing one is created with `mode` (& ~umask); anything else is refused as by
  // OpenRegular. The parent directory must exist.
  Result<UniqueFd> OpenForWrite(std::string_view path, mode_t mode) const;

  // The parent directory of `path` (opened O_PATH|O_DIRECTORY inside the root) and the
  // last component, for the *at() calls that must not follow it. "/" has no parent:
  // kInvalidArgument.
  Result<std::pair<UniqueFd, std::string>> OpenParent(std::string_view path) const;

  // The sandbox path of an open fd (the kernel's name for it, with the root's host path
  // removed). kNotFound if the file was deleted or lies outside the root (a bind mount).
  Result<std::string> PathOf(int fd) const;

  // /proc/self/fd/N: names an O_PATH fd for calls that only take paths (xattrs, inotify).
  static std::string ProcPath(int fd);

  const std::string& HostPath() const { return host_path_; }

 private:
  UniqueFd fd_;
  std::string host_path_;  // canonical; "" when the root is "/"
};

}  // namespace isobox::envd
