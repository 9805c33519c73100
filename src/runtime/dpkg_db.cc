#include "runtime/dpkg_db.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

Status CopyEntry(const fs::path& from, const fs::path& to, const struct stat& st) {
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(to.c_str(), st.st_mode & 0755) < 0 && errno != EEXIST) {
      return SysError("mkdir {}", to.string());
    }
    return Ok();
  }
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    fs::copy_symlink(from, to, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "copy {}: {}", from.string(), ec.message());
    return Ok();
  }
  if (::link(from.c_str(), to.c_str()) == 0) return Ok();
  if (errno != EXDEV && errno != EPERM) return SysError("link {}", from.string());
  std::error_code ec;
  fs::copy_file(from, to, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "copy {}: {}", from.string(), ec.message());
  if (::chmod(to.c_str(), st.st_mode & 0755) < 0) return SysError("chmod {}", to.string());
  return Ok();
}

}  // namespace

Status CopyDpkgDatabase(const fs::path& host_root, const fs::path& dir) {
  static constexpr std::array kDirs = {"var/lib/dpkg",
                                       "var/lib/apt",
                                       "var/lib/apt/lists",
                                       "var/lib/apt/lists/partial",
                                       "var/cache/apt",
                                       "var/cache/apt/archives",
                                       "var/cache/apt/archives/partial",
                                       "var/log/apt"};
  for (const char* path : kDirs) {
    fs::path out = dir / path;
    if (::mkdir(out.c_str(), 0755) < 0 && errno != EEXIST) return SysError("mkdir {}", path);
  }
  fs::path source = host_root / "var/lib/dpkg";
  std::error_code ec;
  if (!fs::is_directory(source, ec)) return Ok();  // not a dpkg system: nothing to know
  auto it = fs::recursive_directory_iterator(source, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) < 0) continue;  // gone meanwhile
    // SECURITY: only what every host user may read (lock files are 0640 root).
    bool readable = S_ISLNK(st.st_mode) || (S_ISDIR(st.st_mode) && (st.st_mode & 0005) == 0005) ||
                    (S_ISREG(st.st_mode) && (st.st_mode & 0004) != 0);
    if (!readable) {
      if (S_ISDIR(st.st_mode)) it.disable_recursion_pending();
      continue;
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    fs::path out = dir / "var/lib/dpkg" / it->path().lexically_relative(source);
    RETURN_IF_ERROR(CopyEntry(it->path(), out, st));
  }
  if (ec) return MakeError(ErrorCode::kInternal, "walk {}: {}", source.string(), ec.message());
  return Ok();
}

std::string DpkgSources(const fs::path& host_root) {
  struct stat st {};
  if (::stat((host_root / "var/lib/dpkg/status").c_str(), &st) < 0) return "dpkg none\n";
  return fmt::format("dpkg {} {} {}.{}\n", st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

}  // namespace isobox::runtime
