#include "server/control/image_accounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "base/sys/syscalls.h"
#include "base/unique_fd.h"
#include "protocol/passwd.h"

namespace isobox::server {
namespace {

constexpr size_t kMaxAccountFile = 4 << 20;
constexpr uint32_t kUserId = 1000;

// SECURITY: every path of the image is resolved inside it: symlinks (absolute ones
// included) and ".." never leave the image's root; no magic links; O_NONBLOCK so that
// a FIFO in the image never blocks isoboxd.
Result<UniqueFd> OpenInRoot(int root, const char* path, uint64_t flags, mode_t mode = 0) {
  struct open_how how {};
  // (openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.)
  how.flags = flags | O_CLOEXEC | ((flags & O_PATH) != 0 ? 0 : O_NONBLOCK);
  how.mode = mode;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int tries = 0;; ++tries) {
    int fd = sys::Openat2(root, path, &how, sizeof how);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EAGAIN || tries == 16) return SysError("open {} in the image", path);
  }
}

// The file's text; an empty optional when it does not exist.
Result<std::optional<std::string>> ReadAccountFile(int root, const char* path) {
  auto fd = OpenInRoot(root, path, O_RDONLY);
  if (!fd) {
    if (fd.error().sys_errno == ENOENT) return std::optional<std::string>();
    return tl::unexpected(fd.error());
  }
  struct stat st {};
  if (::fstat(fd->Get(), &st) < 0) return SysError("stat {} in the image", path);
  // SECURITY: only a regular file of a bounded size is read.
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "/{} in the image is not a regular file", path);
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxAccountFile) {
    return MakeError(ErrorCode::kInvalidArgument, "/{} in the image is larger than {} bytes", path,
                     kMaxAccountFile);
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::read(fd->Get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read {} in the image", path);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return std::optional<std::string>(std::move(text));
}

// Writes `text` as the whole file: an existing regular file keeps its inode, owner and
// mode; a new one is made in etc/ with mode 0644, owned by the image's root.
Status WriteAccountFile(int root, const char* path, const std::string& text, bool exists,
                        uint32_t owner_base) {
  auto fd = exists ? OpenInRoot(root, path, O_WRONLY | O_TRUNC)
                   : OpenInRoot(root, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->Get(), &st) < 0 || !S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "/{} in the image is not a regular file", path);
  }
  // SECURITY: what isoboxd makes belongs to the image's root, never to host root.
  if (!exists && ::fchown(fd->Get(), owner_base, owner_base) < 0) {
    return SysError("chown {} in the image", path);
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd->Get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {} in the image", path);
    done += static_cast<size_t>(n);
  }
  return Ok();
}

// A directory `name` in the directory `parent` (resolved in the image), made with
// `mode` and owned by owner_base + id when missing. An existing one stays as it is.
Status EnsureDir(int root, const char* parent, const char* name, mode_t mode, uint32_t owner) {
  ASSIGN_OR_RETURN(UniqueFd dir, OpenInRoot(root, parent, O_PATH | O_DIRECTORY));
  if (::mkdirat(dir.Get(), name, mode) < 0) {
    if (errno == EEXIST) return Ok();
    return SysError("mkdir {}/{} in the image", parent, name);
  }
  if (::fchownat(dir.Get(), name, owner, owner, AT_SYMLINK_NOFOLLOW) < 0 ||
      ::fchmodat(dir.Get(), name, mode, 0) < 0) {
    return SysError("chown {}/{} in the image", parent, name);
  }
  return Ok();
}

bool IsExecutableFile(int root, const char* path) {
  auto fd = OpenInRoot(root, path, O_PATH);
  struct stat st {};
  return fd && ::fstat(fd->Get(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

bool HasGroup(std::string_view text, std::string_view name) {
  for (const protocol::GroupEntry& group : protocol::ParseGroup(text)) {
    if (group.name == name) return true;
  }
  return false;
}

std::string WithLine(std::string text, const std::string& line, bool first) {
  if (!text.empty() && text.back() != '\n') text.push_back('\n');
  return first ? line + "\n" + text : text + line + "\n";
}

Result<UniqueFd> OpenRoot(const std::filesystem::path& rootfs) {
  UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return SysError("open {}", rootfs.string());
  return root;
}

}  // namespace

Result<ImageAccounts> AddSandboxAccounts(const std::filesystem::path& rootfs,
                                         uint32_t owner_base) {
  ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(rootfs));
  ImageAccounts accounts;
  accounts.shell = IsExecutableFile(root.Get(), "bin/bash") ? "/bin/bash" : "/bin/sh";
  RETURN_IF_ERROR(EnsureDir(root.Get(), "/", "etc", 0755, owner_base));

  ASSIGN_OR_RETURN(std::optional<std::string> passwd, ReadAccountFile(root.Get(), "etc/passwd"));
  std::string text = passwd.value_or("");
  if (!protocol::FindPasswd(text, "root")) {
    text = WithLine(text, "root:x:0:0:root:/root:" + accounts.shell, true);
    accounts.added_root = true;
  }
  if (!protocol::FindPasswd(text, "user")) {
    text = WithLine(text, fmt::format("user:x:{0}:{0}::/home/user:{1}", kUserId, accounts.shell),
                    false);
    accounts.added_user = true;
  }
  if (accounts.added_root || accounts.added_user) {
    RETURN_IF_ERROR(
        WriteAccountFile(root.Get(), "etc/passwd", text, passwd.has_value(), owner_base));
  }

  ASSIGN_OR_RETURN(std::optional<std::string> group, ReadAccountFile(root.Get(), "etc/group"));
  std::string groups = group.value_or("");
  bool changed = false;
  if (!HasGroup(groups, "root")) {
    groups = WithLine(groups, "root:x:0:", true);
    changed = true;
  }
  if (!HasGroup(groups, "user")) {
    groups = WithLine(groups, fmt::format("user:x:{}:", kUserId), false);
    changed = true;
  }
  if (changed) {
    RETURN_IF_ERROR(
        WriteAccountFile(root.Get(), "etc/group", groups, group.has_value(), owner_base));
  }

  // The homes of the accounts as passwd has them now (an image's own `user` keeps its).
  RETURN_IF_ERROR(EnsureDir(root.Get(), "/", "root", 0700, owner_base));
  auto user = protocol::FindPasswd(text, "user");
  if (user && user->home == "/home/user") {
    RETURN_IF_ERROR(EnsureDir(root.Get(), "/", "home", 0755, owner_base));
    RETURN_IF_ERROR(EnsureDir(root.Get(), "home", "user", 0750, owner_base + user->uid));
  }
  return accounts;
}

Result<std::string> ImageUserName(const std::filesystem::path& rootfs, const std::string& user) {
  std::string name = user.substr(0, user.find(':'));
  if (name.empty()) return std::string("user");
  ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(rootfs));
  ASSIGN_OR_RETURN(std::optional<std::string> passwd, ReadAccountFile(root.Get(), "etc/passwd"));
  std::vector<protocol::PasswdEntry> entries = protocol::ParsePasswd(passwd.value_or(""));
  uint32_t uid = 0;
  const char* end = name.data() + name.size();
  bool numeric = std::from_chars(name.data(), end, uid).ptr == end;
  for (const protocol::PasswdEntry& entry : entries) {
    if (numeric ? entry.uid == uid : entry.name == name) return entry.name;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "the image's USER '{}' has no account in its /etc/passwd", user);
}

}  // namespace isobox::server
