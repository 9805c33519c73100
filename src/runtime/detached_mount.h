// Mounts built on the host side as detached mount objects (new mount API), never attached
// to the host's mount tree. The sandbox's init attaches them inside its own mount
// namespace; they disappear with the last reference.
#pragma once

#include <cstddef>
#include <filesystem>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

struct CloneOptions {
  int idmap_userns_fd = -1;  // >= 0: make it an idmapped mount with this namespace's mapping
  bool read_only = true;
};

// A detached recursive copy of the mount at `path`, nosuid and nodev.
Result<UniqueFd> CloneTree(const std::filesystem::path& path, const CloneOptions& options);

// overlayfs' limit on lower layers (OVL_MAX_STACK).
inline constexpr size_t kMaxOverlayLowers = 500;

// A detached overlay mount: `lowers` (top first, 1 to kMaxOverlayLowers) are detached
// mounts, `upper`/`work` are directories on the host. nosuid and nodev, with
// redirect_dir=off and metacopy=off whatever the module's defaults: the upper holds whole
// files and directories only, so that it can become a layer of its own (layer_commit.h).
// More than kMaxOverlayLowers: kInvalidArgument. On a kernel older than 6.7 the layers
// go in one option string the kernel caps at 255 bytes (about 14 layers); a longer stack
// fails with kFailedPrecondition naming the layer count.
Result<UniqueFd> MakeOverlay(const std::vector<int>& lowers, const std::filesystem::path& upper,
                             const std::filesystem::path& work);

// How MakeOverlay hands lower layers to the kernel, probed on its first call (the first
// `lowerdir+` that fails with EINVAL moves to the next form) and kept for the process.
enum class LowerSyntax {
  kProbe,       // not known yet
  kAppendFd,    // fsconfig(FSCONFIG_SET_FD, "lowerdir+") per layer: Linux 6.13+
  kAppendPath,  // fsconfig(FSCONFIG_SET_STRING, "lowerdir+", "/proc/self/fd/N"): 6.7+
  kOneString,   // one "lowerdir=/proc/self/fd/N:..." string of at most 255 bytes
};
LowerSyntax CurrentLowerSyntax();
// Tests: forces a form (kProbe: probe again on the next call); returns the previous one.
LowerSyntax SetLowerSyntaxForTesting(LowerSyntax syntax);

}  // namespace isobox::runtime
