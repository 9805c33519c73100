// The disk limit of a sandbox's writable layer: the overlay upper and work directories
// live on a filesystem of their own, as big as the limit, so a full disk is ENOSPC for
// that sandbox and for nothing else.
//
// Choice (docs/security.md, docs/benchmarks.md): a sparse ext4 image on a loop device.
// tmpfs with size= would charge the sandbox's files to its memory (a 1 GiB disk in a
// 1 GiB sandbox could not be filled without an OOM kill); project quotas need the host's
// state filesystem formatted and mounted for them. The image is formatted once per size
// (mke2fs, no journal: the layer dies with the sandbox) and copied sparsely per sandbox,
// which costs ~1 MB of I/O. The images live in the disk pool (runtime/disk_pool.h), a
// filesystem of their own whose space is taken from the host's up front: sandboxes that
// fill their sparse disks fill the pool, never the host's filesystem. Mounted with online
// discard, a disk holds as much of the pool as it has data, not as much as it ever wrote.
//
// Nothing is left behind: the per-sandbox copy is an unnamed O_TMPFILE held only by the
// loop device (LO_FLAGS_AUTOCLEAR), and the filesystem is a detached mount that is never
// attached to the host's tree; all of it goes away with its last mount. A disk whose
// sandbox is gone may serve another one, emptied first (EmptyDisk), which saves making
// and tearing down a disk per sandbox (~1.5 ms of CPU).
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
#include "base/spare_target.h"
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

// A sandbox's disk: the detached mount of its filesystem, and the image file it lives in
// (unnamed until KeepDisk names it; the loop device holds it too).
struct SandboxDisk {
  UniqueFd mount;
  UniqueFd image;
};

// A detached, nosuid/nodev mount of a fresh ext4 filesystem of `size_bytes` (root
// directory owned by host root, mode 0700) holding kLayerDirs, all owned by host root.
// `images_dir` (the disk pool's, DiskPool::dir) caches the formatted images and holds the
// temporary copies; it must be a directory only root can reach.
Result<SandboxDisk> CreateSandboxDisk(const std::filesystem::path& images_dir,
                                      uint64_t size_bytes);

// Makes a disk outlive this process (a paused sandbox's, across restarts and reboots):
// its filesystem's writes are synced, and its image is copied (sparsely: only its data)
// to `path`, a new file on the host's own filesystem, synced. The disk pool is no place
// for it: the pool is a cache, formatted anew when nothing holds it (disk_pool.h). The
// disk stays mounted and in use; the copy is the caller's to remove.
Status KeepDisk(const SandboxDisk& disk, const std::filesystem::path& path);

// A disk made from a kept image (KeepDisk) as CreateSandboxDisk makes one from a
// formatted image: a sparse copy in `images_dir` (the pool), mounted. The kept image
// stays: the caller removes it once the disk is in use.
Result<SandboxDisk> OpenKeptDisk(const std::filesystem::path& images_dir,
                                 const std::filesystem::path& path);

// Free blocks and inodes of a disk, as statfs reports them.
struct DiskFree {
  uint64_t blocks = 0;
  uint64_t inodes = 0;
  bool operator==(const DiskFree&) const = default;
};
Result<DiskFree> FreeSpaceOf(int disk);

// Empties the disk of a sandbox none of whose processes is left, so that it can serve the
// next one: removes the writable layers' directories with everything below them (never
// following a link) and makes them again as CreateSandboxDisk does, owned by host root.
// Fails, and the disk must then be dropped, when the sandbox left more than `max_inodes`
// files (removing them would cost more than a new disk), when something cannot be removed,
// when a write to the disk was ever lost (a full disk pool), or when the disk then does not
// have exactly the free blocks and inodes of a new disk (`fresh`): a file or directory that
// something still holds keeps its inode and blocks.
Status EmptyDisk(int disk, const DiskFree& fresh, uint64_t max_inodes);

// Disks made ahead of need, so a sandbox create does not wait for the copy, the loop
// device and the ext4 mount (~7 ms): `Take` hands out a spare when one of that size is
// ready and a thread makes the next one. A spare is an empty filesystem no live sandbox
// can reach: a new one, or the disk of a sandbox that is gone, given back with `Return`
// and emptied (EmptyDisk) by the same thread. Each is handed out once per emptying.
class DiskReserve {
 public:
  // What the reserve has done since it started.
  struct Counts {
    uint64_t made = 0;     // new disks
    uint64_t reused = 0;   // returned disks emptied and kept as spares
    uint64_t dropped = 0;  // returned disks not kept (full stock, EmptyDisk failed)
  };

  // Keeps ready disks of each size that was asked for: `spares.base`, one more for each
  // Take that found none (up to `spares.max`), one fewer per `spares.shrink_after` without
  // such a miss (base/spare_target.h); up to twice that count when returned disks come
  // back, and the surplus beyond it is unmounted.
  DiskReserve(std::filesystem::path images_dir, SpareCount spares);
  ~DiskReserve();
  DiskReserve(const DiskReserve&) = delete;
  DiskReserve& operator=(const DiskReserve&) = delete;

  // A disk of `size_bytes` (as CreateSandboxDisk): a spare, or a new one made now.
  Result<SandboxDisk> Take(uint64_t size_bytes);
  // Starts keeping spares of `size_bytes` before the first Take of that size.
  void Want(uint64_t size_bytes);
  // Gives back a disk of `size_bytes` that Take handed out. The caller guarantees that
  // no process of the sandbox that used it is left (all were killed and reaped).
  void Return(uint64_t size_bytes, SandboxDisk disk);
  Counts counts() const;
  // How many disks of `size_bytes` are ready now, and how many the reserve aims to keep.
  size_t Ready(uint64_t size_bytes) const;
  size_t Target(uint64_t size_bytes) const;

  const std::filesystem::path& images_dir() const { return images_dir_; }

 private:
  struct Returned {
    uint64_t size_bytes;
    SandboxDisk disk;
  };

  void Run(std::stop_token stop);
  // A new disk, with the free space of a new disk of its size noted for EmptyDisk.
  Result<SandboxDisk> Make(uint64_t size_bytes);
  // Empties `returned` and keeps it as a spare, or drops it; called with `lock` held,
  // which it releases while it works.
  void Recycle(Returned returned, std::unique_lock<std::mutex>& lock);
  // A size whose spares are short (0 if none); called with mutex_ held.
  uint64_t ShortSize(SpareTarget::TimePoint now);
  // A disk beyond twice its size's target, taken out to be dropped; called with mutex_ held.
  SandboxDisk TakeSurplus(SpareTarget::TimePoint now);
  SpareTarget& TargetOf(uint64_t size_bytes);  // called with mutex_ held

  const std::filesystem::path images_dir_;
  const SpareCount spare_count_;
  mutable std::mutex mutex_;
  std::condition_variable_any wake_;
  std::map<uint64_t, std::deque<SandboxDisk>> spares_;  // by size; every wanted size has a key
  std::map<uint64_t, SpareTarget> targets_;          // by size: how many to keep ready
  std::map<uint64_t, DiskFree> fresh_;               // by size: a new disk's free space
  std::deque<Returned> returned_;                    // waiting to be emptied
  Counts counts_;
  std::jthread worker_;  // last: stopped and joined before the members above go
};

}  // namespace isobox::runtime
