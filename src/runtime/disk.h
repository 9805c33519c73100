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

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// The directories of the writable layers on a sandbox's disk, parents first: overlay
// upper and work directories for the root and /usr layers. Every disk is made with them
// (so a create allocates no inodes on it); the `sandbox_owned` ones are given to the
// sandbox's root when the disk is taken, the rest stay host root's.
struct LayerDir {
  const char* path;
  mode_t mode;
  bool sandbox_owned;
};
inline constexpr std::array<LayerDir, 6> kLayerDirs = {{{"upper", 0700, false},
                                                      {"work", 0700, false},
                                                      {"upper/root", 0755, true},
                                                      {"upper/usr", 0755, true},
                                                      {"work/root", 0700, false},
                                                      {"work/usr", 0700, false}}};

// A detached, nosuid/nodev mount of a fresh ext4 filesystem of `size_bytes` (root
// directory owned by host root, mode 0700) holding kLayerDirs, all owned by host root. `images_dir` caches the formatted images and
// holds the temporary copies; it must be a directory only root can reach.
Result<UniqueFd> CreateSandboxDisk(const std::filesystem::path& images_dir, uint64_t size_bytes);

// Disks made ahead of need, so a sandbox create does not wait for the copy, the loop
// device and the ext4 mount (~7 ms): `Take` hands out a spare when one of that size is
// ready and a thread makes the next one. A spare is a fresh, empty filesystem that no
// sandbox has seen; it is handed out once.
class DiskReserve {
 public:
  // Keeps up to `spares_per_size` ready disks of each size that was asked for.
  DiskReserve(std::filesystem::path images_dir, int spares_per_size);
  ~DiskReserve();
  DiskReserve(const DiskReserve&) = delete;
  DiskReserve& operator=(const DiskReserve&) = delete;

  // A disk of `size_bytes` (as CreateSandboxDisk): a spare, or a new one made now.
  Result<UniqueFd> Take(uint64_t size_bytes);
  // Starts keeping spares of `size_bytes` before the first Take of that size.
  void Want(uint64_t size_bytes);

  const std::filesystem::path& images_dir() const { return images_dir_; }

 private:
  void Run(std::stop_token stop);
  // A size whose spares are short (0 if none); called with mutex_ held.
  uint64_t ShortSize() const;

  const std::filesystem::path images_dir_;
  const size_t spares_per_size_;
  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::map<uint64_t, std::deque<UniqueFd>> spares_;  // by size; every wanted size has a key
  std::jthread worker_;  // last: stopped and joined before the members above go
};

}  // namespace isobox::runtime
