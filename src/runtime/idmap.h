// User-namespace id mappings: every sandbox gets a private, non-overlapping range of
// host uids/gids, so that a process escaping one sandbox is nobody in any other.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// Sandbox ids [0, count) map to host ids [host_base, host_base + count), for uids and
// gids alike.
struct IdRange {
  uint32_t host_base = 0;
  uint32_t count = 65536;
};

// Writes /proc/<pid>/uid_map and gid_map for a child in a new user namespace.
Status WriteIdMaps(pid_t pid, const IdRange& range);

// Creates a user namespace with `range` as its mapping and returns an fd to it. The
// namespace is only used as the idmap of idmapped mounts (mount_setattr), so that files
// owned by on-disk uid N in a shared layer appear as sandbox uid N.
Result<UniqueFd> CreateMappedUserns(const IdRange& range);

}  // namespace isobox::runtime
