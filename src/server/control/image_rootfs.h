// The check of an image's root filesystem after umoci has unpacked it: what the layer scan
// (runtime/archive_scan.h) decided from the tar headers is verified on the files umoci
// actually made. umoci is another tar reader; no scan is a proof about another program
// (notes: three header forms once hid a device node from libarchive that umoci created).
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/result.h"

namespace isobox::server {

struct ImageRootfsStats {
  uint64_t entries = 0;  // every name below the root
  uint64_t bytes = 0;    // st_size of regular files (each name)
};

// Walks `rootfs` without following any symlink or crossing a mount (openat2
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV from the root, fstatat
// AT_SYMLINK_NOFOLLOW) and fails with kInvalidArgument, naming the path, on:
//  - a character or block device node (OCI whiteouts are `.wh.` names, which umoci
//    applies: a device in the unpacked tree came from a device entry),
//  - a socket,
//  - an owner (uid or gid) outside [owner_base, owner_base + 65536), the root included.
// Other errors: the failed call, with errno.
Result<ImageRootfsStats> CheckImageRootfs(const std::filesystem::path& rootfs, uint32_t owner_base);

}  // namespace isobox::server
