#include "runtime/rootfs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <sstream>
#include <string_view>

#include "base/log.h"
#include "base/unique_fd.h"
#include "runtime/accounts.h"
#include "runtime/dpkg_db.h"
#include "runtime/etc_allowlist.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kHosts =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

constexpr std::string_view kNsswitch =
    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
    "protocols: files\nservices: files\nethers: files\nrpc: files\n";

Status WriteFile(const fs::path& path, std::string_view content, mode_t mode) {
  std::error_code ec;
  fs::remove(path, ec);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) return SysError("create {}", path.string());
  if (::write(fd.Get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    return SysError("write {}", path.string());
  }
  if (::fchmod(fd.Get(), mode) < 0) return SysError("chmod {}", path.string());
  return Ok();
}

// Copies a regular file of the host's /etc, rechecking on the open file what the walk saw:
// still a regular file that others may read.
Status CopyEtcFile(const fs::path& from, const fs::path& to, mode_t mode) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return SysError("open {}", from.string());
  struct stat st {};
  if (::fstat(in.Get(), &st) < 0) return SysError("stat {}", from.string());
  // SECURITY: a file made private between the walk and the open is not copied.
  if (!S_ISREG(st.st_mode) || (st.st_mode & S_IROTH) == 0) return Ok();
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!out) return SysError("create {}", to.string());
  std::array<char, 65536> buffer;
  for (;;) {
    ssize_t n = ::read(in.Get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read {}", from.string());
    if (n == 0) break;
    if (::write(out.Get(), buffer.data(), n) != n) return SysError("write {}", to.string());
  }
  if (::fchmod(out.Get(), mode) < 0) return SysError("chmod {}", to.string());
  return Ok();
}

Status MakeEtcDir(const fs::path& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) < 0) return SysError("mkdir {}", path.string());
  if (::chmod(path.c_str(), mode) < 0) return SysError("chmod {}", path.string());
  return Ok();
}

// Copies the allowlisted part of the host's /etc (etc_allowlist.h), owned by root,
// without set-id bits; symlinks stay symlinks.
Status CopyEtc(const fs::path& host_etc, const fs::path& target) {
  RETURN_IF_ERROR(MakeEtcDir(target, 0755));
  size_t copied = 0, skipped = 0;
  RETURN_IF_ERROR(WalkAllowedEtc(host_etc, [&](const EtcVisit& visit) -> Status {
    fs::path out = target / visit.relative;
    mode_t mode = visit.st.st_mode & 01777;
    switch (visit.action) {
      case EtcVisit::Action::kSkip:
        ++skipped;
        return Ok();
      case EtcVisit::Action::kParent:
        return MakeEtcDir(out, mode);
      case EtcVisit::Action::kCopy:
        ++copied;
        if (S_ISDIR(visit.st.st_mode)) return MakeEtcDir(out, mode);
        if (S_ISREG(visit.st.st_mode)) return CopyEtcFile(host_etc / visit.relative, out, mode);
        if (::symlink(visit.link_target.c_str(), out.c_str()) < 0) {
          return SysError("symlink {}", out.string());
        }
        return Ok();
    }
    return Ok();
  }));
  LOG_DEBUG("base layer /etc: {} entries copied, {} skipped", copied, skipped);
  return Ok();
}

// A small world-readable host file; empty when it cannot be read.
std::string ReadSmall(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str().substr(0, 1 << 20);
}

Status WriteAccounts(const fs::path& etc, const fs::path& host_etc) {
  // accounts.h: the host's system accounts (world-readable there), none of its people.
  std::string passwd = SandboxPasswd(ReadSmall(host_etc / "passwd"));
  RETURN_IF_ERROR(WriteFile(etc / "passwd", passwd, 0644));
  RETURN_IF_ERROR(
      WriteFile(etc / "group", SandboxGroup(ReadSmall(host_etc / "group"), passwd), 0644));
  RETURN_IF_ERROR(WriteFile(etc / "shadow", SandboxShadow(passwd), 0600));
  RETURN_IF_ERROR(WriteFile(etc / "hosts", kHosts, 0644));
  RETURN_IF_ERROR(WriteFile(etc / "hostname", "isobox\n", 0644));
  RETURN_IF_ERROR(WriteFile(etc / "resolv.conf", "", 0644));
  RETURN_IF_ERROR(WriteFile(etc / "nsswitch.conf", kNsswitch, 0644));
  // The live mount table, as on any Linux system.
  std::error_code ec;
  fs::remove(etc / "mtab", ec);
  fs::create_symlink("../proc/self/mounts", etc / "mtab", ec);
  return Ok();
}

// The host's top-level links into /usr (/bin -> usr/bin, ...), made alike in the layer.
constexpr std::array<const char*, 6> kUsrLinks = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};

Status MakeDirs(const fs::path& dir, const fs::path& host_root) {
  struct Dir {
    const char* path;
    mode_t mode;
  };
  static constexpr std::array kDirs = {
      Dir{"usr", 0755},     Dir{"proc", 0555},      Dir{"dev", 0755},       Dir{"sys", 0555},
      Dir{"tmp", 01777},    Dir{"run", 0755},       Dir{"mnt", 0755},       Dir{"opt", 0755},
      Dir{"srv", 0755},     Dir{"media", 0755},     Dir{"var", 0755},       Dir{"var/tmp", 01777},
      Dir{"var/log", 0755}, Dir{"var/lib", 0755},   Dir{"var/cache", 0755}, Dir{"root", 0700},
      Dir{"home", 0755},    Dir{"home/user", 0755}, Dir{".isobox", 0755}};
  for (const Dir& d : kDirs) {
    fs::path path = dir / d.path;
    if (::mkdir(path.c_str(), d.mode) < 0) return SysError("mkdir {}", path.string());
    if (::chmod(path.c_str(), d.mode) < 0) return SysError("chmod {}", path.string());
  }
  for (const char* link : kUsrLinks) {
    fs::path host = host_root / link;
    std::error_code ec;
    if (!fs::is_symlink(host, ec)) continue;
    fs::create_symlink(fs::read_symlink(host, ec), dir / link, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "symlink {}: {}", link, ec.message());
  }
  return Ok();
}

// /home/user gets the usual dotfiles from the layer's /etc/skel (the host's, as far as
// others may read it), owned by the user.
Status MakeHome(const fs::path& dir) {
  fs::path home = dir / "home/user";
  fs::path skel = dir / "etc/skel";
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(skel, ec))) {
    fs::copy(skel, home, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "copy {}: {}", skel.string(), ec.message());
  }
  for (auto it = fs::recursive_directory_iterator(home, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (::lchown(it->path().c_str(), kSandboxUserId, kSandboxUserId) < 0) {
      return SysError("chown {}", it->path().string());
    }
  }
  if (::chown(home.c_str(), kSandboxUserId, kSandboxUserId) < 0) {
    return SysError("chown {}", home.string());
  }
  return Ok();
}

}  // namespace

// Bumped whenever what BuildBaseLayer makes changes for the same host files.
const char* BaseLayerVersion() { return "base-layer-3"; }

Status BuildBaseLayer(const fs::path& dir, const fs::path& host_root) {
  if (::mkdir(dir.c_str(), 0755) < 0) return SysError("mkdir {}", dir.string());
  RETURN_IF_ERROR(MakeDirs(dir, host_root));
  RETURN_IF_ERROR(CopyEtc(host_root / "etc", dir / "etc"));
  RETURN_IF_ERROR(WriteAccounts(dir / "etc", host_root / "etc"));
  RETURN_IF_ERROR(CopyDpkgDatabase(host_root, dir));
  return MakeHome(dir);
}

Result<std::string> BaseLayerSources(const fs::path& host_root) {
  std::string text = fmt::format("{}\n", BaseLayerVersion());
  text += DpkgSources(host_root);
  for (const char* accounts : {"etc/passwd", "etc/group"}) {
    struct stat st {};
    if (::stat((host_root / accounts).c_str(), &st) == 0) {
      text += fmt::format("accounts {} {} {} {}.{}\n", accounts, st.st_ino, st.st_size,
                          st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    }
  }
  for (const char* link : kUsrLinks) {
    std::error_code ec;
    fs::path target = fs::read_symlink(host_root / link, ec);
    if (!ec) text += fmt::format("link {} {}\n", link, target.string());
  }
  RETURN_IF_ERROR(WalkAllowedEtc(host_root / "etc", [&](const EtcVisit& visit) -> Status {
    const struct stat& st = visit.st;
    // A parent directory is made with its mode only: what else changes in it (a new file
    // next to the allowlisted entry) changes nothing in the layer.
    // A skipped entry matters by its mode only (made readable, it would be copied).
    if (visit.action == EtcVisit::Action::kCopy) {
      text += fmt::format("copy {:o} {}:{} {} {}.{} {}.{} ", st.st_mode, st.st_uid, st.st_gid,
                          st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                          st.st_ctim.tv_nsec);
    } else {
      text += fmt::format("{} {:o} ", visit.action == EtcVisit::Action::kParent ? "parent" : "skip",
                          st.st_mode);
    }
    text += visit.relative;
    text += '\0';
    text += visit.link_target;
    text += '\n';
    return Ok();
  }));
  return text;
}

}  // namespace isobox::runtime
