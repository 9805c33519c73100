// Turns the upper directory of a build step's overlay into a store layer, in place.
//
// A step runs in a sandbox of some slot: what it wrote is owned on disk by the slot's host
// ids. Store layers are owned by the store range instead (never host root or a host user),
// and are seen by any slot through an idmap from the store range to that slot's range
// (idmap.h CreateShiftUserns). The upper is already in overlayfs' own format (0:0 character
// devices as whiteouts, trusted.overlay.opaque on directories that hide the lower ones), so
// the layer is the upper itself with its owners shifted and nothing the store may not hold.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/result.h"

namespace isobox::runtime {

struct LayerCommitOptions {
  uint32_t from_base = 0;  // the slot's host ids: owners in [from_base, from_base + 65536)
  uint32_t to_base = 0;    // the store range [to_base, to_base + 65536)
  uint64_t max_files = 1'000'000;
  uint64_t max_bytes = 64ull << 30;
  // Directory levels, the upper's root being 1; the walk holds one open fd per level.
  uint32_t max_depth = 256;
};

struct LayerCommitStats {
  uint64_t files = 0;                 // entries below the upper's root, every kind and every name
  uint64_t bytes = 0;                 // st_size of regular files, once per inode
  uint64_t whiteouts = 0;             // 0:0 character devices
  uint64_t capabilities_removed = 0;  // security.capability xattrs dropped
};

// Walks `upper` (a directory on the host's filesystem written through an overlay by a
// sandbox that has ended) without following any symlink or crossing a mount, and:
//  - shifts owners (uid and gid) from_base + n to to_base + n; an owner outside the slot's
//    range becomes to_base + 65534 (nobody), except on whiteouts, which the kernel makes as
//    host root and which all get to_base + 0; POSIX ACL entries are shifted the same way;
//  - restores each mode with its setuid, setgid and sticky bits after the chown;
//  - keeps regular files, directories, symlinks, fifos and 0:0 whiteouts; any other
//    device node or a socket fails the commit (kInvalidArgument naming the path);
//  - keeps trusted.overlay.opaque ("y" or "x") and removes every other trusted.overlay.*
//    xattr (origin, impure, ...), but fails on redirect or metacopy ones (kFailedPrecondition:
//    such an upper needs its lowers; MakeOverlay turns both features off);
//  - removes security.capability (a v3 capability names the slot's root as host id);
//  - fails with kResourceExhausted past max_files entries, max_bytes bytes or max_depth
//    levels ("layer has more than N files" / "bytes", "layer is deeper than N directories");
//  - changes an inode with several names once;
//  - then syncfs()s the upper's filesystem.
// The upper's root directory is converted too but not counted. On error the upper is left
// partly converted: the caller removes it.
Result<LayerCommitStats> CommitLayer(const std::filesystem::path& upper,
                                     const LayerCommitOptions& options);

}  // namespace isobox::runtime
