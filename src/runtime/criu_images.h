// Edits of a checkpoint's images that let it be restored as another sandbox (a snapshot's
// or a fork's copy): a sandbox's user namespace maps its ids to its slot's host range, and
// its hostname is its id, both saved by CRIU in the images. A copy restored in another
// slot gets that slot's range and its own name; nothing else in the images names them
// (processes' credentials and files' owners are saved as the sandbox sees them).
//
// CRIU's images are protobuf messages framed by a 32-bit length after an 8-byte header
// (criu/images/*.proto: userns_entry {repeated uid_gid_extent uid_map = 1, gid_map = 2},
// uid_gid_extent {first = 1, lower_first = 2, count = 3}, utsns_entry {nodename = 1,
// domainname = 2}). The few fields needed are read and written here directly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::runtime {

// In every userns-*.img of `images_dir`, each uid and gid extent whose host ids
// (lower_first) lie in [from_base, from_base + count) moves by to_base - from_base.
// kInvalidArgument when an extent lies partly or wholly outside that range (it would map
// host ids the new slot does not own), kNotFound when there is no user namespace image.
Status MoveIdMaps(const std::filesystem::path& images_dir, uint32_t from_base, uint32_t to_base,
                  uint32_t count);

// In every utsns-*.img of `images_dir`, the hostname becomes `hostname` (the domain name
// stays). kNotFound when there is no UTS namespace image.
Status SetHostname(const std::filesystem::path& images_dir, std::string_view hostname);

// In cgroup.img of `images_dir`, every path component `from` of a process's groups and of
// the saved group tree becomes `to` (a sandbox's private name, the same length: the saved
// cgroup namespace root is a prefix length into those paths). CRIU puts the restored
// processes in those groups and roots their cgroup namespace there; a clone's must be its
// own. kNotFound without a cgroup image; kInvalidArgument when the lengths differ.
Status RenameCgroups(const std::filesystem::path& images_dir, std::string_view from,
                     std::string_view to);

// For tests: the first uid extent of the first userns image, and the hostname of the
// first utsns image.
struct IdExtent {
  uint32_t first = 0, lower_first = 0, count = 0;
};
Result<IdExtent> FirstUidExtent(const std::filesystem::path& images_dir);
Result<std::string> SavedHostname(const std::filesystem::path& images_dir);
// Every process group path saved in cgroup.img (sets[].ctls[].path).
Result<std::vector<std::string>> SavedCgroupPaths(const std::filesystem::path& images_dir);

}  // namespace isobox::runtime
