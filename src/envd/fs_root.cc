#include "envd/fs_root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "base/sys/syscalls.h"
#include "envd/paths.h"
#include "envd/regular_file.h"

namespace isobox::envd {
namespace {

// openat2 answers EAGAIN when a concurrent rename could have let ".." escape; the
// lookup is retried a few times before giving up.
constexpr int kRetries = 16;

std::string Relative(std::string_view path) {
  std::string clean = CleanPath(path);
  return clean == "/" ? "." : clean.substr(1);
}

}  // namespace

Result<FsRoot> FsRoot::Open(const std::string& host_path) {
  FsRoot root;
  char real[PATH_MAX];
  if (::realpath(host_path.c_str(), real) == nullptr) return SysError("fs root {}", host_path);
  root.host_path_ = std::string(real) == "/" ? "" : real;
  root.fd_.Reset(::open(real, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.fd_) return SysError("open fs root {}", host_path);
  return root;
}

Result<UniqueFd> FsRoot::Open(std::string_view path, int flags, mode_t mode) const {
  std::string relative = Relative(path);
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  // SECURITY: RESOLVE_IN_ROOT treats the root fd as "/" for every component, including
  // symlink targets and "..": nothing outside the sandbox root can be reached. Magic links
  // (/proc/<pid>/fd/N, /proc/<pid>/root) would jump out of any root; they are refused.
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    int fd = sys::Openat2(fd_.Get(), relative.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(fd);
    if (errno == EAGAIN && attempt < kRetries) continue;
    if (errno == EINTR) continue;
    return SysError("open {}", CleanPath(path));
  }
}

Result<UniqueFd> FsRoot::OpenRegular(std::string_view path, int flags) const {
  ASSIGN_OR_RETURN(UniqueFd path_fd, Open(path, O_PATH));
  return ReopenRegularFile(path_fd.Get(), flags, CleanPath(path));
}

Result<UniqueFd> FsRoot::OpenForWrite(std::string_view path, mode_t mode) const {
  auto existing = Open(path, O_PATH);
  if (existing) return ReopenRegularFile(existing->Get(), O_WRONLY | O_TRUNC, CleanPath(path));
  if (existing.error().sys_errno != ENOENT) return existing;
  // Missing: created here. SECURITY: something made at the path since the lookup above is
  // not waited for either: O_NONBLOCK makes a FIFO's open fail (ENXIO, no reader) or
  // return at once, and the check refuses whatever is not a regular file.
  ASSIGN_OR_RETURN(UniqueFd fd,
                   Open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOCTTY, mode));
  RETURN_IF_ERROR(CheckRegularFile(fd.Get(), CleanPath(path)));
  int flags = ::fcntl(fd.Get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.Get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
    return SysError("fcntl {}", CleanPath(path));
  }
  return fd;
}

Result<std::pair<UniqueFd, std::string>> FsRoot::OpenParent(std::string_view path) const {
  std::string clean = CleanPath(path);
  if (clean == "/") return MakeError(ErrorCode::kInvalidArgument, "path '/' has no parent");
  size_t slash = clean.rfind('/');
  std::string parent = slash == 0 ? "/" : clean.substr(0, slash);
  ASSIGN_OR_RETURN(UniqueFd fd, Open(parent, O_PATH | O_DIRECTORY));
  return std::make_pair(std::move(fd), clean.substr(slash + 1));
}

Result<std::string> FsRoot::PathOf(int fd) const {
  std::string link = ProcPath(fd);
  char buffer[PATH_MAX + 1];
  ssize_t n = ::readlink(link.c_str(), buffer, PATH_MAX);
  if (n < 0) return SysError("readlink {}", link);
  std::string host(buffer, static_cast<size_t>(n));
  if (host.empty() || host.front() != '/' || host.ends_with(" (deleted)")) {
    return MakeError(ErrorCode::kNotFound, "file is no longer reachable");
  }
  if (host_path_.empty()) return host;
  if (host == host_path_) return std::string("/");
  if (host.starts_with(host_path_) && host[host_path_.size()] == '/') {
    return host.substr(host_path_.size());
  }
  return MakeError(ErrorCode::kNotFound, "file lies outside the root");
}

std::string FsRoot::ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace isobox::envd
