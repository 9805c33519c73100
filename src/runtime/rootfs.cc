#include "runtime/rootfs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <string_view>

#include "base/unique_fd.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// SECURITY: host secrets never enter a sandbox: shadow files, ssh host keys, private TLS
// keys, sudo rules, subordinate id ranges and the machine id stay on the host.
constexpr std::array<std::string_view, 14> kEtcSkipped = {
    "shadow",    "shadow-", "gshadow", "gshadow-",   "ssh",    "ssl/private", "sudoers",
    "sudoers.d", "subuid",  "subgid",  "machine-id", "isobox", ".pwd.lock",   "security/opasswd"};

constexpr std::string_view kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "bin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
    "sys:x:3:3:sys:/dev:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    "user:x:1000:1000::/home/user:/bin/bash\n";

constexpr std::string_view kGroup =
    "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\n"
    "users:x:100:user\nnogroup:x:65534:\nuser:x:1000:\n";

constexpr std::string_view kShadow =
    "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n";

constexpr std::string_view kHosts =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

constexpr std::string_view kNsswitch =
    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
    "protocols: files\nservices: files\nethers: files\nrpc: files\n";

bool Skipped(const fs::path& relative) {
  for (std::string_view skip : kEtcSkipped) {
    if (relative == fs::path(skip)) return true;
  }
  return false;
}

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

// Copies the host's /etc without the secrets, keeping symlinks as symlinks.
Status CopyEtc(const fs::path& target) {
  std::error_code ec;
  fs::create_directory(target, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", target.string(), ec.message());
  auto it =
      fs::recursive_directory_iterator("/etc", fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    fs::path relative = it->path().lexically_relative("/etc");
    if (Skipped(relative)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) it.disable_recursion_pending();
      continue;
    }
    fs::path out = target / relative;
    fs::file_status status = it->symlink_status(ec);
    if (ec)
      return MakeError(ErrorCode::kInternal, "stat {}: {}", it->path().string(), ec.message());
    if (fs::is_symlink(status)) {
      fs::copy_symlink(it->path(), out, ec);
    } else if (fs::is_directory(status)) {
      fs::create_directory(out, it->path(), ec);
    } else if (fs::is_regular_file(status)) {
      fs::copy_file(it->path(), out, fs::copy_options::overwrite_existing, ec);
    }
    if (ec) {
      return MakeError(ErrorCode::kInternal, "copy {}: {}", it->path().string(), ec.message());
    }
  }
  if (ec) return MakeError(ErrorCode::kInternal, "walk /etc: {}", ec.message());
  return Ok();
}

Status WriteAccounts(const fs::path& etc) {
  RETURN_IF_ERROR(WriteFile(etc / "passwd", kPasswd, 0644));
  RETURN_IF_ERROR(WriteFile(etc / "group", kGroup, 0644));
  RETURN_IF_ERROR(WriteFile(etc / "shadow", kShadow, 0600));
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

Status MakeDirs(const fs::path& dir) {
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
  for (const char* link : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    fs::path host = fs::path("/") / link;
    std::error_code ec;
    if (!fs::is_symlink(host, ec)) continue;
    fs::create_symlink(fs::read_symlink(host, ec), dir / link, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "symlink {}: {}", link, ec.message());
  }
  return Ok();
}

// /home/user gets the usual dotfiles from /etc/skel, owned by the user.
Status MakeHome(const fs::path& dir) {
  fs::path home = dir / "home/user";
  std::error_code ec;
  if (fs::is_directory("/etc/skel", ec)) {
    fs::copy("/etc/skel", home, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "copy /etc/skel: {}", ec.message());
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

const char* BaseLayerVersion() { return "base-layer-1"; }

Status BuildBaseLayer(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) < 0) return SysError("mkdir {}", dir.string());
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(CopyEtc(dir / "etc"));
  RETURN_IF_ERROR(WriteAccounts(dir / "etc"));
  return MakeHome(dir);
}

}  // namespace isobox::runtime
