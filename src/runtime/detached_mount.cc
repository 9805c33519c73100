#include "runtime/detached_mount.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <string_view>

namespace isobox::runtime {
namespace {

// fsconfig copies a string value with strndup_user(value, 256): 255 bytes and the NUL.
constexpr size_t kMaxFsconfigString = 255;

std::atomic<LowerSyntax> g_lower_syntax{LowerSyntax::kProbe};

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// What the kernel wrote to the fs context's log (fsopen(2)) since the last read, as
// " (<message>; ...)", or "" when it said nothing. Reading empties the log.
std::string DrainLog(int fs) {
  std::string said;
  char message[1024];
  for (int i = 0; i < 8; ++i) {  // the log keeps the last 8 messages
    ssize_t n = ::read(fs, message, sizeof(message));
    if (n <= 0) break;
    said += said.empty() ? " (" : "; ";
    // "e overlay: ..." / "w ..." / "i ...": the severity letter is dropped.
    std::string_view text(message, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.remove_suffix(1);
    said += text.size() > 2 && text[1] == ' ' ? text.substr(2) : text;
  }
  return said.empty() ? said : said + ")";
}

// ErrnoError(err, what) followed by what the kernel logged about it.
Unexpected KernelError(int fs, int err, const std::string& what) {
  Unexpected error = ErrnoError(err, what);
  error.value().message += DrainLog(fs);
  return error;
}

// errno of one lower-layer fsconfig call, 0 when it succeeded.
int AppendLower(int fs, LowerSyntax syntax, int lower) {
  int rc;
  if (syntax == LowerSyntax::kAppendFd) {
    rc = ::fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", nullptr, lower);
  } else {
    std::string path = ProcFdPath(lower);
    rc = ::fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", path.c_str(), 0);
  }
  return rc < 0 ? errno : 0;
}

// Kernels before 6.7: all layers in one "lowerdir" string, which fsconfig caps.
Status SetOneString(int fs, const std::vector<int>& lowers) {
  std::string lowerdir;
  for (int fd : lowers) {
    if (!lowerdir.empty()) lowerdir += ':';
    lowerdir += ProcFdPath(fd);
  }
  if (lowerdir.size() > kMaxFsconfigString) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "overlay of {} lower layers: this kernel takes them in one lowerdir option "
                     "of at most {} bytes and these need {} (Linux 6.7 and later take up to {})",
                     lowers.size(), kMaxFsconfigString, lowerdir.size(), kMaxOverlayLowers);
  }
  if (::fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir", lowerdir.c_str(), 0) < 0) {
    int err = errno;
    return KernelError(fs, err, "overlay lowerdir=" + lowerdir);
  }
  // Kept only now: the appends may have failed on a bad top layer, not an old kernel.
  g_lower_syntax.store(LowerSyntax::kOneString, std::memory_order_relaxed);
  return Ok();
}

// Whether overlayfs parses fsconfig keys itself (Linux 6.5+): an unknown key fails at
// once. Before, the VFS's legacy parser queues any key for mount time, so a "lowerdir+"
// that fsconfig took proves nothing there.
bool OverlayParsesKeys() {
  UniqueFd probe(::fsopen("overlay", FSOPEN_CLOEXEC));
  return probe && ::fsconfig(probe.Get(), FSCONFIG_SET_FLAG, "isobox-probe", nullptr, 0) < 0;
}

// The form this kernel takes, found by adding the top layer as lowerdir+ by fd, then by
// path: EINVAL means it takes no fd for it (< 6.13) or does not know it (< 6.7). Sets
// `*added` when the top layer is in.
Result<LowerSyntax> ProbeLowerSyntax(int fs, int top, bool* added) {
  for (LowerSyntax form : {LowerSyntax::kAppendFd, LowerSyntax::kAppendPath}) {
    if (form == LowerSyntax::kAppendPath && !OverlayParsesKeys()) break;
    int err = AppendLower(fs, form, top);
    if (err == 0) {
      *added = true;
      g_lower_syntax.store(form, std::memory_order_relaxed);
      return form;
    }
    if (err != EINVAL) return KernelError(fs, err, "overlay lowerdir+ layer 1");
    (void)DrainLog(fs);  // the complaint about the form
  }
  return LowerSyntax::kOneString;  // kept only once a mount took it (SetOneString)
}

// Sets `lowers` (top first) in the form this kernel takes.
Status SetLowers(int fs, const std::vector<int>& lowers) {
  LowerSyntax syntax = g_lower_syntax.load(std::memory_order_relaxed);
  bool added = false;
  if (syntax == LowerSyntax::kProbe) {
    ASSIGN_OR_RETURN(syntax, ProbeLowerSyntax(fs, lowers.front(), &added));
  }
  if (syntax == LowerSyntax::kOneString) return SetOneString(fs, lowers);
  for (size_t i = added ? 1 : 0; i < lowers.size(); ++i) {
    if (int err = AppendLower(fs, syntax, lowers[i]); err != 0) {
      return KernelError(fs, err,
                         fmt::format("overlay lowerdir+ layer {} of {}", i + 1, lowers.size()));
    }
  }
  return Ok();
}

}  // namespace

Result<UniqueFd> CloneTree(const std::filesystem::path& path, const CloneOptions& options) {
  UniqueFd tree(
      ::open_tree(AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (!tree) return SysError("open_tree {}", path.string());
  struct mount_attr attr {};
  // SECURITY: layers shared with the host are never writable through this mount, and
  // setuid bits or device nodes in them have no effect inside a sandbox.
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (options.read_only) attr.attr_set |= MOUNT_ATTR_RDONLY;
  if (options.idmap_userns_fd >= 0) {
    attr.attr_set |= MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<uint64_t>(options.idmap_userns_fd);
  }
  if (::mount_setattr(tree.Get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
    return SysError("mount_setattr {}", path.string());
  }
  return tree;
}

Result<UniqueFd> MakeOverlay(const std::vector<int>& lowers, const std::filesystem::path& upper,
                             const std::filesystem::path& work) {
  if (lowers.empty() || lowers.size() > kMaxOverlayLowers) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "overlay of {} lower layers: overlayfs takes 1 to {}", lowers.size(),
                     kMaxOverlayLowers);
  }
  UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) return SysError("fsopen overlay");
  auto set = [&](const char* key, const std::string& value) -> Status {
    if (::fsconfig(fs.Get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0) {
      int err = errno;
      return KernelError(fs.Get(), err, fmt::format("overlay {}={}", key, value));
    }
    return Ok();
  };
  // A renamed lower directory (redirect) or a copied-up inode without its data (metacopy)
  // would make the upper depend on these very lowers: with both off, whatever the
  // module's defaults, the upper is whole and can be committed as a layer on its own.
  RETURN_IF_ERROR(set("metacopy", "off"));
  RETURN_IF_ERROR(set("redirect_dir", "off"));
  RETURN_IF_ERROR(SetLowers(fs.Get(), lowers));
  RETURN_IF_ERROR(set("upperdir", upper.string()));
  RETURN_IF_ERROR(set("workdir", work.string()));
  if (::fsconfig(fs.Get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    int err = errno;
    return KernelError(fs.Get(), err, "create overlay upper " + upper.string());
  }
  UniqueFd mount(::fsmount(fs.Get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!mount) return SysError("fsmount overlay upper {}", upper.string());
  return mount;
}

LowerSyntax CurrentLowerSyntax() { return g_lower_syntax.load(std::memory_order_relaxed); }

LowerSyntax SetLowerSyntaxForTesting(LowerSyntax syntax) {
  return g_lower_syntax.exchange(syntax, std::memory_order_relaxed);
}

}  // namespace isobox::runtime
