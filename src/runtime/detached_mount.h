// Mounts built on the host side as detached mount objects (new mount API), never attached
// to the host's mount tree. The sandbox's init attaches them inside its own mount
// namespace; they disappear with the last reference.
#pragma once

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

// A detached overlay mount: `lowers` (top first) are detached mounts, `upper`/`work` are
// directories on the host. nosuid and nodev.
Result<UniqueFd> MakeOverlay(const std::vector<int>& lowers, const std::filesystem::path& upper,
                             const std::filesystem::path& work);

}  // namespace isobox::runtime
