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

// Ids [inside_first, inside_first + count) of a user namespace are host ids
// [outside_first, outside_first + count), for uids and gids alike: the uid_map line
// "inside_first outside_first count".
struct IdShift {
  uint32_t inside_first = 0;
  uint32_t outside_first = 0;
  uint32_t count = 65536;
};

// Creates a user namespace with `shift` as its mapping and returns an fd to it. The
// namespace is only used as the idmap of idmapped mounts (mount_setattr): through such a
// mount, a file owned by on-disk id inside_first + n shows as host id outside_first + n
// (a store layer's owners, store base + n, become a slot's ids); any other on-disk id
// shows as the overflow id 65534, and no one, host root included, has a capability over
// such an inode through the mount (a 0700 directory of it is closed to host root).
// kInvalidArgument when a range is empty, passes 2^32 - 1, or `outside` holds host id 0.
Result<UniqueFd> CreateShiftUserns(const IdShift& shift);

// CreateShiftUserns({0, range.host_base, range.count}): files owned by on-disk uid N in
// a shared layer appear as sandbox uid N.
Result<UniqueFd> CreateMappedUserns(const IdRange& range);

}  // namespace isobox::runtime
