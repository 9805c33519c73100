#include "envd/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "envd/fs_root.h"

namespace isobox::envd {

std::string_view FileKindOf(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a named pipe";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "of an unknown type";
}

Status CheckRegularFile(int fd, std::string_view name) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return SysError("stat {}", name);
  if (S_ISREG(st.st_mode)) return Ok();
  if (S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "path '{}' is a directory", name);
  }
  return MakeError(ErrorCode::kInvalidArgument, "path '{}' is not a regular file ({})", name,
                   FileKindOf(st.st_mode));
}

Result<UniqueFd> ReopenRegularFile(int path_fd, int flags, std::string_view name) {
  // SECURITY: only a regular file is ever opened for real: a FIFO would block the I/O
  // thread (every request of the sandbox waits behind it), a device's open runs its driver.
  RETURN_IF_ERROR(CheckRegularFile(path_fd, name));
  // The magic link names the inode that was checked, not the path, which may have
  // changed since (TOCTOU-free). envd's own /proc: it is never resolved inside a root.
  std::string self = FsRoot::ProcPath(path_fd);
  int fd;
  do {
    fd = ::open(self.c_str(), (flags & ~(O_CREAT | O_PATH)) | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return SysError("open {}", name);
  return UniqueFd(fd);
}

Result<UniqueFd> OpenRegularFile(const std::string& path, int flags) {
  UniqueFd path_fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!path_fd) return SysError("open {}", path);
  return ReopenRegularFile(path_fd.Get(), flags, path);
}

}  // namespace isobox::envd
