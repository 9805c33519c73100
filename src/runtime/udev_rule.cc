#include "runtime/udev_rule.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

#include "base/log.h"
#include "runtime/loop_device.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Characters a state directory may have for its rule: none that udev's glob matching or
// its rule syntax would read as anything but themselves (*?[]"\ and whitespace).
bool SafeForRule(std::string_view path) {
  for (char c : path) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("/._-+,@=:%~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return !path.empty() && path.front() == '/';
}

// FNV-1a: a name for the rule file that is the same for a state directory in every run.
uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// `dir` absolute, links resolved, without a trailing slash.
std::string Absolute(const fs::path& dir) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(dir, ec);
  std::string text = (ec ? fs::absolute(dir, ec) : canonical).lexically_normal().string();
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

}  // namespace

std::string PoolImagesDirName(const fs::path& state_dir) {
  return fmt::format("isobox-disks-{:016x}", Fnv1a(Absolute(state_dir)));
}

Result<std::string> UdevRuleText(const fs::path& state_dir) {
  std::string dir = Absolute(state_dir);
  if (!SafeForRule(dir)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "state directory {}: no udev rule can name it (glob, quote or space "
                     "characters)",
                     dir);
  }
  if (dir.back() != '/') dir += '/';
  constexpr const char* kSettings =
      "ENV{UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG}=\"1\", "
      "ENV{UDEV_DISABLE_PERSISTENT_STORAGE_BLKID_FLAG}=\"1\", "
      "ENV{DM_UDEV_DISABLE_OTHER_RULES_FLAG}=\"1\", ENV{SYSTEMD_READY}=\"0\", "
      "ENV{UDISKS_IGNORE}=\"1\", OPTIONS+=\"nowatch\"";
  return fmt::format(
      "# Written by isoboxd for the state directory {0}: the loop devices of its disk pool\n"
      "# and sandbox disks are not probed, linked, assembled or watched by the host.\n"
      "SUBSYSTEM==\"block\", KERNEL==\"loop[0-9]*\", ATTR{{loop/backing_file}}==\"{0}*\", "
      "{2}\n"
      "SUBSYSTEM==\"block\", KERNEL==\"loop[0-9]*\", ATTR{{loop/backing_file}}==\"/{1}/*\", "
      "{2}\n",
      dir, PoolImagesDirName(state_dir), kSettings);
}

bool UdevRuns() {
  struct stat st {};
  return ::stat("/run/udev/control", &st) == 0 && S_ISSOCK(st.st_mode);
}

fs::path UdevRulePath(const fs::path& state_dir, const fs::path& rules_dir) {
  return rules_dir / fmt::format("60-isobox-{:016x}.rules", Fnv1a(Absolute(state_dir)));
}

Status InstallUdevRule(const fs::path& state_dir, const fs::path& rules_dir) {
  ASSIGN_OR_RETURN(std::string text, UdevRuleText(state_dir));
  std::error_code ec;
  fs::create_directories(rules_dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", rules_dir.string(), ec.message());
  fs::path path = UdevRulePath(state_dir, rules_dir);
  fs::path partial = path.string() + fmt::format(".{}.tmp", ::getpid());
  {
    UniqueFd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return SysError("create {}", partial.string());
    if (::write(fd.Get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      ::unlink(partial.c_str());
      return SysError("write {}", partial.string());
    }
  }
  if (::rename(partial.c_str(), path.c_str()) < 0) {
    ::unlink(partial.c_str());
    return SysError("rename {}", path.string());
  }
  // udevd reloads changed rules by itself only when it handles an event at least 3 s after
  // it last looked: the pool's loop device, attached next, would be probed before that.
  if (UdevRuns()) {
    RETURN_IF_ERROR(WithContext(RunTool("udevadm", {"control", "--reload"}), "reload udev rules"));
  }
  return Ok();
}

void RemoveUdevRule(const fs::path& state_dir, const fs::path& rules_dir) {
  fs::path path = UdevRulePath(state_dir, rules_dir);
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
    LOG_WARN("remove {}: {}", path.string(), std::strerror(errno));
  }
}

}  // namespace isobox::runtime
