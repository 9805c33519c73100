#include "server/control/volume_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/sys/syscalls.h"
#include "runtime/volume_disk.h"

namespace isobox::server {
namespace {

constexpr size_t kMaxPath = 4096;
constexpr uint32_t kMaxId = 65535;
constexpr int kMaxRemoveDepth = 256;
constexpr uint32_t kDefaultFileMode = 0644;
constexpr uint32_t kDefaultDirMode = 0755;

// SECURITY: the one way a path of a request is opened: inside the volume's root, with no
// magic link and no other mount on the way; `flags` O_NOFOLLOW keeps a last component
// that is a link from being followed. O_NONBLOCK: a FIFO never blocks.
Result<UniqueFd> OpenInVolume(int root, const std::string& path, uint64_t flags) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC | ((flags & O_PATH) != 0 ? 0 : O_NONBLOCK);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  for (int tries = 0;; ++tries) {
    int fd = sys::Openat2(root, path.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EAGAIN || tries == 16) return SysError("{}", path);
  }
}

// "/a/b" -> {"/a", "b"}; the root has no parent (empty name).
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  size_t slash = path.rfind('/');
  if (path == "/" || slash == std::string::npos) return {"/", ""};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
}

SystemTime TimeOf(const struct timespec& ts) {
  return SystemTime(std::chrono::duration_cast<SystemTime::duration>(
      std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

// The entry `name` of directory `dir` (an fd of it), never following it.
Result<VolumeEntry> EntryAt(int dir, const char* name, const std::string& path) {
  struct stat st {};
  int flags = AT_SYMLINK_NOFOLLOW | (name[0] == '\0' ? AT_EMPTY_PATH : 0);
  if (::fstatat(dir, name, &st, flags) < 0) return SysError("stat {}", path);
  VolumeEntry entry;
  entry.path = path;
  entry.name = path == "/" ? "/" : SplitPath(path).second;
  entry.size = static_cast<uint64_t>(st.st_size);
  entry.mode = st.st_mode & 0777;
  entry.uid = st.st_uid;
  entry.gid = st.st_gid;
  entry.atime = TimeOf(st.st_atim);
  entry.mtime = TimeOf(st.st_mtim);
  entry.ctime = TimeOf(st.st_ctim);
  if (S_ISREG(st.st_mode)) entry.type = VolumeFileType::kFile;
  if (S_ISDIR(st.st_mode)) entry.type = VolumeFileType::kDirectory;
  if (S_ISLNK(st.st_mode)) {
    entry.type = VolumeFileType::kSymlink;
    char target[kMaxPath];
    ssize_t n = ::readlinkat(dir, name, target, sizeof target);
    if (n > 0) entry.target.assign(target, static_cast<size_t>(n));
  }
  return entry;
}

// chmod of the very inode an O_PATH fd holds (fchmod refuses O_PATH fds).
Status ChmodFd(int fd, uint32_t mode, const std::string& path) {
  std::string self = fmt::format("/proc/self/fd/{}", fd);
  if (::chmod(self.c_str(), mode) < 0) return SysError("chmod {}", path);
  return Ok();
}

// Owner and mode of an entry just made (an fd of it, O_PATH or not, never a link).
Status SetOwnerAndMode(int fd, const NewEntryOptions& options, uint32_t default_mode,
                       const std::string& path) {
  uid_t uid = options.uid.value_or(runtime::kVolumeOwnerId);
  gid_t gid = options.gid.value_or(runtime::kVolumeOwnerId);
  if (::fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0) return SysError("chown {}", path);
  return ChmodFd(fd, options.mode.value_or(default_mode), path);
}

// Makes the directory `name` in `dir` and opens it, never following a link.
Result<UniqueFd> MakeDirAt(int dir, const std::string& name, const std::string& path,
                           const NewEntryOptions& options) {
  if (::mkdirat(dir, name.c_str(), 0700) < 0) return SysError("mkdir {}", path);
  UniqueFd made(::openat(dir, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!made) return SysError("open {}", path);
  RETURN_IF_ERROR(SetOwnerAndMode(made.Get(), options, kDefaultDirMode, path));
  return made;
}

// The directory at `path`, made with its missing parents (mkdir -p), as an O_PATH fd. A
// parent that exists is resolved as any path is (links followed inside the volume).
Result<UniqueFd> MakeParents(int root, const std::string& path, const NewEntryOptions& options) {
  ASSIGN_OR_RETURN(UniqueFd dir, OpenInVolume(root, "/", O_PATH | O_DIRECTORY));
  std::string done = "/";
  NewEntryOptions parent_options;  // the request's owner, the default mode
  parent_options.uid = options.uid;
  parent_options.gid = options.gid;
  for (size_t start = 1; start < path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string name = path.substr(start, end - start);
    done = JoinPath(done, name);
    auto next = OpenInVolume(root, done, O_PATH | O_DIRECTORY);
    if (!next && next.error().sys_errno == ENOENT) {
      next = MakeDirAt(dir.Get(), name, done, parent_options);
      // Made meanwhile by someone else (a sandbox): take it as it is.
      if (!next && next.error().sys_errno == EEXIST) {
        next = OpenInVolume(root, done, O_PATH | O_DIRECTORY);
      }
    }
    if (!next) return tl::unexpected(next.error());
    dir = std::move(*next);
    start = end + 1;
  }
  return dir;
}

Status RemoveTree(int parent, const char* name, const std::string& path, int depth) {
  if (::unlinkat(parent, name, 0) == 0) return Ok();
  if (errno != EISDIR && errno != EPERM) return SysError("remove {}", path);
  if (depth >= kMaxRemoveDepth) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: more than {} directories deep", path,
                     kMaxRemoveDepth);
  }
  UniqueFd dir(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return SysError("open {}", path);
  std::vector<std::string> names;
  {
    DIR* stream = ::fdopendir(::dup(dir.Get()));
    if (stream == nullptr) return SysError("list {}", path);
    while (dirent* entry = ::readdir(stream)) {
      std::string_view child = entry->d_name;
      if (child != "." && child != "..") names.emplace_back(child);
    }
    ::closedir(stream);
  }
  for (const std::string& child : names) {
    RETURN_IF_ERROR(RemoveTree(dir.Get(), child.c_str(), JoinPath(path, child), depth + 1));
  }
  if (::unlinkat(parent, name, AT_REMOVEDIR) < 0) return SysError("remove {}", path);
  return Ok();
}

Status ListInto(int dir, const std::string& path, uint32_t depth, std::vector<VolumeEntry>& out) {
  std::vector<std::string> names;
  {
    DIR* stream = ::fdopendir(::dup(dir));
    if (stream == nullptr) return SysError("list {}", path);
    while (dirent* entry = ::readdir(stream)) {
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(stream);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (out.size() >= kMaxListEntries) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "more than {} entries: list a smaller depth or a directory below",
                       kMaxListEntries);
    }
    auto entry = EntryAt(dir, name.c_str(), JoinPath(path, name));
    if (!entry) continue;  // removed meanwhile
    out.push_back(*entry);
    if (entry->type != VolumeFileType::kDirectory || depth <= 1) continue;
    UniqueFd child(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child) continue;  // replaced meanwhile
    RETURN_IF_ERROR(ListInto(child.Get(), entry->path, depth - 1, out));
  }
  return Ok();
}

}  // namespace

std::string_view VolumeFileTypeName(VolumeFileType type) {
  switch (type) {
    case VolumeFileType::kFile:
      return "file";
    case VolumeFileType::kDirectory:
      return "directory";
    case VolumeFileType::kSymlink:
      return "symlink";
    case VolumeFileType::kUnknown:
      break;
  }
  return "unknown";
}

Result<std::string> CleanVolumePath(std::string_view path) {
  if (path.empty()) return MakeError(ErrorCode::kInvalidArgument, "'path' is required");
  if (path.size() > kMaxPath) {
    return MakeError(ErrorCode::kInvalidArgument, "'path' is longer than {} bytes", kMaxPath);
  }
  if (path.find('\0') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "'path' holds a NUL byte");
  }
  std::vector<std::string_view> parts;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out;
  for (std::string_view part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? std::string("/") : out;
}

Status CheckNewEntryOptions(const NewEntryOptions& options) {
  for (const auto& [id, field] : {std::pair{options.uid, "uid"}, std::pair{options.gid, "gid"}}) {
    if (id && *id > kMaxId) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}' must be at most {} (a sandbox has no name for larger ids)", field,
                       kMaxId);
    }
  }
  if (options.mode && *options.mode > 07777) {
    return MakeError(ErrorCode::kInvalidArgument, "'mode' must hold permission bits only (07777)");
  }
  return Ok();
}

Result<VolumeEntry> StatVolumeEntry(int root, const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenInVolume(root, path, O_PATH | O_NOFOLLOW));
  return EntryAt(fd.Get(), "", path);
}

Result<std::vector<VolumeEntry>> ListVolumeDir(int root, const std::string& path, uint32_t depth) {
  if (depth > kMaxListDepth) {
    return MakeError(ErrorCode::kInvalidArgument, "'depth' must be between 1 and {}",
                     kMaxListDepth);
  }
  ASSIGN_OR_RETURN(UniqueFd dir, OpenInVolume(root, path, O_RDONLY | O_DIRECTORY));
  std::vector<VolumeEntry> out;
  RETURN_IF_ERROR(ListInto(dir.Get(), path, std::max<uint32_t>(depth, 1), out));
  return out;
}

Result<VolumeEntry> MakeVolumeDir(int root, const std::string& path,
                                  const NewEntryOptions& options) {
  RETURN_IF_ERROR(CheckNewEntryOptions(options));
  auto [parent_path, name] = SplitPath(path);
  if (name.empty()) {
    if (options.force) return StatVolumeEntry(root, path);
    return MakeError(ErrorCode::kAlreadyExists, "/ exists");
  }
  UniqueFd parent;
  if (options.force) {
    ASSIGN_OR_RETURN(parent, MakeParents(root, parent_path, options));
  } else {
    ASSIGN_OR_RETURN(parent, OpenInVolume(root, parent_path, O_PATH | O_DIRECTORY));
  }
  auto made = MakeDirAt(parent.Get(), name, path, options);
  if (!made && made.error().sys_errno == EEXIST && options.force) {
    ASSIGN_OR_RETURN(VolumeEntry existing, EntryAt(parent.Get(), name.c_str(), path));
    if (existing.type == VolumeFileType::kDirectory) return existing;
    return MakeError(ErrorCode::kAlreadyExists, "{} exists and is not a directory", path);
  }
  if (!made) return tl::unexpected(made.error());
  return EntryAt(made->Get(), "", path);
}

Status RemoveVolumeEntry(int root, const std::string& path) {
  auto [parent_path, name] = SplitPath(path);
  if (name.empty())
    return MakeError(ErrorCode::kInvalidArgument, "cannot remove the volume's root");
  ASSIGN_OR_RETURN(UniqueFd parent, OpenInVolume(root, parent_path, O_PATH | O_DIRECTORY));
  struct stat st {};
  if (::fstatat(parent.Get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    return SysError("{}", path);
  }
  return RemoveTree(parent.Get(), name.c_str(), path, 0);
}

Result<VolumeEntry> UpdateVolumeEntry(int root, const std::string& path,
                                      std::optional<uint32_t> uid, std::optional<uint32_t> gid,
                                      std::optional<uint32_t> mode) {
  NewEntryOptions asked;
  asked.uid = uid;
  asked.gid = gid;
  asked.mode = mode;
  RETURN_IF_ERROR(CheckNewEntryOptions(asked));
  ASSIGN_OR_RETURN(UniqueFd fd, OpenInVolume(root, path, O_PATH | O_NOFOLLOW));
  struct stat st {};
  if (::fstatat(fd.Get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
    return SysError("stat {}", path);
  }
  if (mode) {
    if (S_ISLNK(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument, "{} is a symbolic link: it has no mode", path);
    }
    RETURN_IF_ERROR(ChmodFd(fd.Get(), *mode, path));
  }
  if (uid || gid) {
    uid_t new_uid = uid ? *uid : static_cast<uid_t>(-1);
    gid_t new_gid = gid ? *gid : static_cast<gid_t>(-1);
    if (::fchownat(fd.Get(), "", new_uid, new_gid, AT_EMPTY_PATH) < 0) {
      return SysError("chown {}", path);
    }
  }
  return EntryAt(fd.Get(), "", path);
}

Result<VolumeFileRead> OpenVolumeFile(int root, const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd inode, OpenInVolume(root, path, O_PATH));
  struct stat st {};
  if (::fstat(inode.Get(), &st) < 0) return SysError("stat {}", path);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "{} is not a regular file", path);
  }
  // The very inode checked above, opened for reading (a FIFO or socket never is).
  std::string self = fmt::format("/proc/self/fd/{}", inode.Get());
  UniqueFd fd(::open(self.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return SysError("open {}", path);
  return VolumeFileRead{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

Result<VolumeWrite> BeginVolumeWrite(int root, const std::string& path,
                                     const NewEntryOptions& options) {
  RETURN_IF_ERROR(CheckNewEntryOptions(options));
  auto [parent_path, name] = SplitPath(path);
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "/ is a directory");
  VolumeWrite write;
  write.name = name;
  write.path = path;
  write.options = options;
  if (options.force) {
    ASSIGN_OR_RETURN(write.parent, MakeParents(root, parent_path, options));
  } else {
    ASSIGN_OR_RETURN(write.parent, OpenInVolume(root, parent_path, O_PATH | O_DIRECTORY));
  }
  struct stat st {};
  if (::fstatat(write.parent.Get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!options.force) return MakeError(ErrorCode::kAlreadyExists, "{} exists", path);
    if (!S_ISREG(st.st_mode)) {
      return MakeError(ErrorCode::kAlreadyExists, "{} exists and is not a regular file", path);
    }
  }
  write.file.Reset(::openat(write.parent.Get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
  if (!write.file) return SysError("create {}", path);
  return write;
}

Status WriteVolumeData(const VolumeWrite& write, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(write.file.Get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", write.path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<VolumeEntry> CommitVolumeWrite(VolumeWrite& write) {
  RETURN_IF_ERROR(SetOwnerAndMode(write.file.Get(), write.options, kDefaultFileMode, write.path));
  if (::fsync(write.file.Get()) < 0) return SysError("sync {}", write.path);
  std::string self = fmt::format("/proc/self/fd/{}", write.file.Get());
  int parent = write.parent.Get();
  if (!write.options.force) {
    // Fails with EEXIST if the name was taken meanwhile: never replaces.
    if (::linkat(AT_FDCWD, self.c_str(), parent, write.name.c_str(), AT_SYMLINK_FOLLOW) < 0) {
      return SysError("{}", write.path);
    }
  } else {
    uint64_t random = 0;
    (void)::getrandom(&random, sizeof random, 0);
    std::string staged = fmt::format(".isobox-write-{:016x}", random);
    if (::linkat(AT_FDCWD, self.c_str(), parent, staged.c_str(), AT_SYMLINK_FOLLOW) < 0) {
      return SysError("{}", write.path);
    }
    // Replaces a file (or nothing) in one step; a directory there stays (EISDIR).
    if (::renameat(parent, staged.c_str(), parent, write.name.c_str()) < 0) {
      int err = errno;
      ::unlinkat(parent, staged.c_str(), 0);
      return ErrnoError(err == EISDIR ? EEXIST : err, "{}", write.path);
    }
  }
  write.file.Reset();
  return EntryAt(parent, write.name.c_str(), write.path);
}

}  // namespace isobox::server
