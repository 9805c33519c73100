// The disk limit of a sandbox's writable layer: the overlay upper and work directories
// live on a filesystem of their own, as big as the limit, so a full disk is ENOSPC for
// that sandbox and for nothing else.
//
// Choice (docs/security.md, docs/benchmarks.md): a sparse ext4 image on a loop device.
// tmpfs with size= would charge the sandbox's files to its memory (a 1 GiB disk in a
// 1 GiB sandbox could not be filled without an OOM kill); project quotas need the host's
// state filesystem formatted and mounted for them. The image is formatted once per size
// (mke2fs, no journal: the layer dies with the sandbox) and copied sparsely per sandbox,
// which costs ~1 MB of I/O.
//
// Nothing is left behind: the per-sandbox copy is an unnamed O_TMPFILE held only by the
// loop device (LO_FLAGS_AUTOCLEAR), and the filesystem is a detached mount that is never
// attached to the host's tree; all of it goes away with the sandbox's mount namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// A detached, nosuid/nodev mount of a fresh ext4 filesystem of `size_bytes` (root
// directory owned by host root, mode 0700). `images_dir` caches the formatted images and
// holds the temporary copies; it must be a directory only root can reach.
Result<UniqueFd> CreateSandboxDisk(const std::filesystem::path& images_dir, uint64_t size_bytes);

}  // namespace isobox::runtime
