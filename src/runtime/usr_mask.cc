#include "runtime/usr_mask.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string_view>
#include <utility>

#include "base/unique_fd.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Deeper than any real /usr; a bound on the scan's recursion (one fd per level).
constexpr int kMaxDepth = 256;

// SECURITY: the rule of what a sandbox may see under /usr: what every host user may
// read. A directory others cannot traverse hides all of its contents.
bool HiddenFromOthers(const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return false;
  if (S_ISDIR(st.st_mode)) return (st.st_mode & S_IXOTH) == 0;
  return (st.st_mode & S_IROTH) == 0;
}

struct Scan {
  const std::atomic<bool>* stop = nullptr;
  std::vector<std::string> hidden{};
};

// The entries of an open directory (name, d_type), without "." and "..".
Result<std::vector<std::pair<std::string, unsigned char>>> ReadEntries(int dir_fd) {
  int copy = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (copy < 0) return SysError("open directory");
  DIR* dir = ::fdopendir(copy);
  if (dir == nullptr) {
    int err = errno;
    ::close(copy);
    return ErrnoError(err, "fdopendir");
  }
  std::vector<std::pair<std::string, unsigned char>> entries;
  errno = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") entries.emplace_back(name, entry->d_type);
    errno = 0;
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return ErrnoError(err, "readdir");
  return entries;
}

Status ScanDir(int dir_fd, const std::string& relative, int depth, Scan& scan) {
  if (scan.stop != nullptr && scan.stop->load()) {
    return MakeError(ErrorCode::kCanceled, "scan canceled");
  }
  if (depth > kMaxDepth) return MakeError(ErrorCode::kOutOfRange, "{}: too deep", relative);
  ASSIGN_OR_RETURN(auto entries, WithContext(ReadEntries(dir_fd), relative));
  for (const auto& [name, type] : entries) {
    if (type == DT_LNK) continue;
    std::string path = relative.empty() ? name : relative + "/" + name;
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      return SysError("stat {}", path);
    }
    if (HiddenFromOthers(st)) {
      scan.hidden.push_back(path);
      continue;
    }
    if (!S_ISDIR(st.st_mode)) continue;
    UniqueFd child(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;  // replaced
      return SysError("open {}", path);
    }
    RETURN_IF_ERROR(ScanDir(child.Get(), path, depth + 1, scan));
  }
  return Ok();
}

std::string StatText(const struct stat& st) {
  return fmt::format("{:o} {}:{} {} {}.{} {}.{}", st.st_mode, st.st_uid, st.st_gid, st.st_size,
                     st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

// "<what> <stat>\n", or "<what> none\n" when it does not exist.
Result<std::string> StatLine(std::string_view what, const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return fmt::format("{} none\n", what);
    return SysError("stat {}", path.string());
  }
  return fmt::format("{} {} {}\n", what, st.st_ino, StatText(st));
}

bool ValidRelative(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.back() == '/') return false;
  for (size_t start = 0; start <= path.size();) {
    size_t slash = std::min(path.find('/', start), path.size());
    std::string_view part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

Result<std::vector<std::string>> ScanUsr(const fs::path& usr, const std::atomic<bool>* stop) {
  // SECURITY: the overlay sees the lower layer's own filesystem only, also below mount
  // points; so does this clone of that one mount (without AT_RECURSIVE), and the scan
  // covers exactly what sandboxes see.
  UniqueFd tree(::open_tree(AT_FDCWD, usr.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (!tree) return SysError("open_tree {}", usr.string());
  UniqueFd root(::openat(tree.Get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return SysError("open {}", usr.string());
  Scan scan{.stop = stop};
  RETURN_IF_ERROR(WithContext(ScanDir(root.Get(), "", 0, scan), "scan " + usr.string()));
  std::sort(scan.hidden.begin(), scan.hidden.end());
  return std::move(scan.hidden);
}

Result<std::string> UsrScanKey(const fs::path& usr, const fs::path& dpkg_dir) {
  std::string text = "usr-scan-key-1\n";
  ASSIGN_OR_RETURN(std::string line, StatLine("usr", usr));
  text += line;
  std::vector<std::string> lines;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(usr, ec)) {
    ASSIGN_OR_RETURN(line, StatLine(entry.path().filename().string(), entry.path()));
    lines.push_back(std::move(line));
  }
  if (ec) return MakeError(ErrorCode::kInternal, "list {}: {}", usr.string(), ec.message());
  ASSIGN_OR_RETURN(line, StatLine("dpkg-status", dpkg_dir / "status"));
  lines.push_back(std::move(line));
  ASSIGN_OR_RETURN(line, StatLine("dpkg-info", dpkg_dir / "info"));
  lines.push_back(std::move(line));
  fs::path local = usr / "local";
  if (fs::is_directory(fs::symlink_status(local, ec))) {
    auto it = fs::recursive_directory_iterator(local, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::string relative = it->path().lexically_relative(usr).string();
      ASSIGN_OR_RETURN(line, StatLine(relative, it->path()));
      lines.push_back(std::move(line));
    }
    if (ec) return MakeError(ErrorCode::kInternal, "walk {}: {}", local.string(), ec.message());
  }
  std::sort(lines.begin(), lines.end());
  for (const std::string& each : lines) text += each;
  return text;
}

std::vector<std::string> SandboxWhiteouts(const fs::path& usr) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(usr / "lib", ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("python3")) continue;
    if (fs::is_regular_file(entry.path() / "EXTERNALLY-MANAGED", ec)) {
      out.push_back("lib/" + name + "/EXTERNALLY-MANAGED");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status BuildUsrMask(const fs::path& usr, const std::vector<std::string>& hidden,
                    const fs::path& dir) {
  for (const std::string& path : hidden) {
    if (!ValidRelative(path)) {
      return MakeError(ErrorCode::kInvalidArgument, "not a relative path below /usr: '{}'", path);
    }
  }
  if (::mkdir(dir.c_str(), 0755) < 0) return SysError("mkdir {}", dir.string());
  std::set<std::string, std::less<>> whiteouts;
  std::vector<std::pair<std::string, struct stat>> made;  // directories, for their times
  std::set<std::string, std::less<>> made_names;
  for (const std::string& path : hidden) {
    bool skip = false;
    for (size_t slash = path.find('/'); slash != std::string::npos && !skip;
         slash = path.find('/', slash + 1)) {
      std::string parent = path.substr(0, slash);
      if (whiteouts.contains(parent)) skip = true;  // hidden with its directory
      if (skip || made_names.contains(parent)) continue;
      struct stat st {};
      if (::lstat((usr / parent).c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        skip = true;  // gone from the host: nothing to hide
        continue;
      }
      fs::path out = dir / parent;
      // The merged directory shows the topmost layer's attributes: the host's.
      if (::mkdir(out.c_str(), 0700) < 0) return SysError("mkdir {}", out.string());
      if (::chown(out.c_str(), st.st_uid, st.st_gid) < 0) return SysError("chown {}", out.string());
      if (::chmod(out.c_str(), st.st_mode & 07777) < 0) return SysError("chmod {}", out.string());
      made.emplace_back(parent, st);
      made_names.insert(parent);
    }
    if (skip) continue;
    fs::path out = dir / path;
    // SECURITY: an overlayfs whiteout (a 0/0 character device, made by host root) in a
    // layer above /usr: the path does not exist in the merged /usr.
    if (::mknod(out.c_str(), S_IFCHR, ::makedev(0, 0)) < 0 && errno != EEXIST) {
      return SysError("mknod {}", out.string());
    }
    whiteouts.insert(path);
  }
  // The sandbox's sudo (src/sudo/main.cc, in the agent's directory), above the host's if
  // it has one: a setuid sudo can never work under no_new_privs and nosuid.
  if (!made_names.contains("bin")) {
    struct stat st {};
    if (::lstat((usr / "bin").c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
      st = {};  // no usr/bin on the host (tests): a plain root-owned one
      st.st_mode = S_IFDIR | 0755;
    }
    fs::path out = dir / "bin";
    if (::mkdir(out.c_str(), 0700) < 0) return SysError("mkdir {}", out.string());
    if (::chown(out.c_str(), st.st_uid, st.st_gid) < 0) return SysError("chown {}", out.string());
    if (::chmod(out.c_str(), st.st_mode & 07777) < 0) return SysError("chmod {}", out.string());
    made.emplace_back("bin", st);
  }
  fs::path sudo = dir / "bin" / "sudo";
  if (::symlink(kSandboxSudo, sudo.c_str()) < 0) return SysError("symlink {}", sudo.string());
  if (::lchown(sudo.c_str(), 0, 0) < 0) return SysError("chown {}", sudo.string());
  for (const auto& [parent, st] : made) {
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    fs::path out = dir / parent;
    if (::utimensat(AT_FDCWD, out.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) {
      return SysError("utimensat {}", out.string());
    }
  }
  return Ok();
}

}  // namespace isobox::runtime
