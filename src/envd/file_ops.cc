#include "envd/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <utility>

#include "envd/paths.h"


namespace isobox::envd {

namespace {

std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// Calls fn(name) for every entry of an open directory except "." and "..", one
// getdents64 buffer at a time (bounded memory whatever the directory's size).
template <typename Fn>
Status ForEachEntry(int dir_fd, Fn fn) {
  char buffer[32 << 10];
  while (true) {
    long n = ::syscall(SYS_getdents64, dir_fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read directory");
    if (n == 0) return Ok();
    for (long at = 0; at < n;) {
      auto* entry = reinterpret_cast<struct dirent64*>(buffer + at);
      at += entry->d_reclen;
      std::string_view name(entry->d_name);
      if (name == "." || name == "..") continue;
      RETURN_IF_ERROR(fn(name));
    }
  }
}

Status RemoveTree(int parent, const std::string& name, const std::string& path, int depth) {
  if (depth > 4096) return MakeError(ErrorCode::kResourceExhausted, "{}: too deep", path);
  // O_NOFOLLOW|O_DIRECTORY: a symlink or a file swapped in meanwhile is not descended.
  UniqueFd dir(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir && (errno == ENOTDIR || errno == ELOOP)) {
    if (::unlinkat(parent, name.c_str(), 0) < 0 && errno != ENOENT) {
      return SysError("remove {}", path);
    }
    return Ok();
  }
  if (!dir) return errno == ENOENT ? Ok() : SysError("open {}", path);
  // Entries created while removing make rmdir fail with ENOTEMPTY: a few more passes.
  for (int pass = 0; pass < 8; ++pass) {
    RETURN_IF_ERROR(ForEachEntry(dir.Get(), [&](std::string_view child_name) -> Status {
      std::string child(child_name);
      if (::unlinkat(dir.Get(), child.c_str(), 0) == 0 || errno == ENOENT) return Ok();
      if (errno != EISDIR) return SysError("remove {}/{}", path, child);
      return RemoveTree(dir.Get(), child, path + "/" + child, depth + 1);
    }));
    if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return Ok();
    if (errno != ENOTEMPTY) break;
    ::lseek(dir.Get(), 0, SEEK_SET);
  }
  return SysError("remove {}", path);
}

}  // namespace

Status MakeDirs(const FsRoot& root, const std::string& dir, const User& user) {
  std::string path;
  std::string_view rest(dir);
  while (!rest.empty()) {
    size_t slash = rest.find('/', 1);
    path += rest.substr(0, slash);
    rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash);
    if (path == "/") continue;
    auto existing = root.Open(path, O_PATH | O_DIRECTORY);
    if (existing) continue;
    if (existing.error().sys_errno == ENOTDIR) {
      return MakeError(ErrorCode::kInvalidArgument, "path '{}' is not a directory", path);
    }
    if (existing.error().sys_errno != ENOENT) return tl::unexpected(existing.error());
    ASSIGN_OR_RETURN(auto parent, root.OpenParent(path));
    int fd = parent.first.Get();
    const char* name = parent.second.c_str();
    if (::mkdirat(fd, name, 0777) < 0) {
      if (errno == EEXIST) continue;  // created meanwhile; checked on the next lookup
      return SysError("mkdir {}", path);
    }
    if (::fchownat(fd, name, user.uid, user.gid, AT_SYMLINK_NOFOLLOW) < 0) {
      return SysError("chown {}", path);
    }
  }
  return Ok();
}

Result<UniqueFd> OpenForUpload(const FsRoot& root, const std::string& path, const User& user) {
  RETURN_IF_ERROR(MakeDirs(root, ParentOf(path), user));
  // A directory, a FIFO or a device at `path` is refused, never opened (fs_root.h).
  ASSIGN_OR_RETURN(UniqueFd fd, root.OpenForWrite(path, 0666));
  if (::fchown(fd.Get(), user.uid, user.gid) < 0) return SysError("chown {}", path);
  return fd;
}

Status RemoveAll(const FsRoot& root, const std::string& path) {
  auto parent = root.OpenParent(path);
  if (!parent && parent.error().sys_errno == ENOENT) return Ok();
  if (!parent) return tl::unexpected(parent.error());
  return RemoveTree(parent->first.Get(), parent->second, path, 0);
}

Status MoveEntry(const FsRoot& root, const std::string& from, const std::string& to,
                 const User& user) {
  RETURN_IF_ERROR(MakeDirs(root, ParentOf(to), user));
  auto source = root.OpenParent(from);
  if (!source && source.error().sys_errno == ENOENT) {
    return MakeError(ErrorCode::kNotFound, "source file not found: {}", from);
  }
  if (!source) return tl::unexpected(source.error());
  ASSIGN_OR_RETURN(auto target, root.OpenParent(to));
  if (::renameat(source->first.Get(), source->second.c_str(), target.first.Get(),
                 target.second.c_str()) < 0) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "source file not found: {}", from);
    return SysError("rename {} to {}", from, to);
  }
  return Ok();
}

Result<std::vector<std::string>> ReadDirNames(int dir_fd, size_t limit) {
  std::vector<std::string> names;
  RETURN_IF_ERROR(ForEachEntry(dir_fd, [&](std::string_view name) -> Status {
    if (names.size() >= limit) {
      return MakeError(ErrorCode::kResourceExhausted, "more than {} entries", limit);
    }
    names.emplace_back(name);
    return Ok();
  }));
  std::sort(names.begin(), names.end());
  return names;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

std::string_view ContentTypeFor(std::string_view path) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 17> kTypes = {{
      {".avif", "image/avif"},
      {".css", "text/css; charset=utf-8"},
      {".gif", "image/gif"},
      {".htm", "text/html; charset=utf-8"},
      {".html", "text/html; charset=utf-8"},
      {".jpeg", "image/jpeg"},
      {".jpg", "image/jpeg"},
      {".js", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".pdf", "application/pdf"},
      {".png", "image/png"},
      {".svg", "image/svg+xml"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
      {".webp", "image/webp"},
      {".xml", "text/xml; charset=utf-8"},
  }};
  std::string base = BaseName(path);
  size_t dot = base.rfind('.');
  if (dot == std::string::npos) return "application/octet-stream";
  std::string ext = base.substr(dot);
  for (char& c : ext) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (const auto& [known, type] : kTypes) {
    if (ext == known) return type;
  }
  return "application/octet-stream";
}

}  // namespace isobox::envd
