// The disk pool: the one filesystem that holds every sandbox's disk (runtime/disk.h), so
// that sandboxes filling their disks fill the pool and never the host's filesystem, where
// isoboxd's database and audit log live.
//
// Choice (docs/security.md H3): a sandbox's disk is a sparse image; summing their full
// sizes against the host's free space would admit a few dozen 1 GiB sandboxes on a typical
// host, and allocating them up front would cost the same space, where 1000 idle
// sandboxes hold ~1 MiB each. So the sparse images stay, and live on a filesystem of their
// own: `<state>/disk-pool.img`, allocated in full on the host's filesystem (fallocate: the
// host's space is taken once, when the pool is made, and can never be taken later),
// formatted as ext4 on its own loop device and mounted as a detached mount that only
// isoboxd holds (like a sandbox's disk: never in any mount table, so nothing on the host,
// fstrim included, reaches it). Sandboxes share the pool's space; when they fill it, the
// ones writing then get ENOSPC (at fsync; a write never synced is lost) in their own
// disks, and nothing outside the pool is touched. A create is refused while the pool's
// free space is below its reserve (Admit), so that new sandboxes do not start on a full
// pool.
//
// Lifetime: the images inside are unnamed files held by their disks' loop devices, and
// they hold the pool's filesystem, and so its loop device, until the last disk goes,
// whatever becomes of isoboxd (kill -9 included). A start finds that loop device still
// attached (by the image's device and inode) and mounts it again: the same filesystem,
// with the disks of the sandboxes it re-adopts. When no loop device is attached to the
// image, nothing can hold any file in the pool: it is allocated and formatted anew (its
// content, the formatted images cached per disk size, is only a cache), so it is never
// checked, and a new size given by --disk-pool-mb takes effect then.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

struct DiskPoolSpace {
  uint64_t size = 0;     // bytes the pool's filesystem holds
  uint64_t free = 0;     // bytes free in it now
  uint64_t reserve = 0;  // creates are refused below this much free
};

class DiskPool {
 public:
  // The default size of a new pool: a quarter of the host filesystem's free space, at most
  // 64 GiB, at least 2 GiB (1000 idle sandboxes hold ~1 GiB of it).
  static uint64_t DefaultSize(uint64_t host_free);
  // Creates are refused below this much free in a pool of `size`: 1/16 of it, at most 1 GiB.
  static uint64_t ReserveFor(uint64_t size);
  // The host's filesystem keeps at least this much free after the pool is allocated.
  static constexpr uint64_t kHostReserve = 1ull << 30;
  static constexpr uint64_t kMinSize = 64ull << 20;

  // The pool of `state_dir` (see above). `size_bytes`: the size to give a pool that is made
  // now (a pool still in use keeps its size); 0: the image's size as it is, or DefaultSize
  // for a new one. Installs the udev rule for the state directory's loop devices first
  // (runtime/udev_rule.h).
  static Result<DiskPool> Open(const std::filesystem::path& state_dir, uint64_t size_bytes);

  DiskPool(DiskPool&& other) noexcept = default;
  DiskPool& operator=(DiskPool&&) = delete;
  // Lets go of the pool (its filesystem stays while disks in it are held) and removes the
  // udev rule, unless Keep() was called.
  ~DiskPool();

  // The directory of the disk images (DiskReserve's images_dir), reached through the
  // pool's mount fd: /proc/<isoboxd's pid>/fd/<fd>/<PoolImagesDirName> (udev_rule.h).
  const std::filesystem::path& dir() const { return dir_; }
  Result<DiskPoolSpace> Space() const;
  // OK when the pool has at least its reserve free; else a kResourceExhausted error with
  // errno ENOSPC (HTTP 507) that names the numbers.
  Status Admit() const;
  // Sandboxes are left running on the pool: keep the udev rule for their loop devices.
  void Keep() { keep_ = true; }

 private:
  DiskPool(std::filesystem::path state_dir, UniqueFd mount, uint64_t reserve);

  std::filesystem::path state_dir_;
  UniqueFd mount_;  // the pool's detached mount; empty once moved from
  std::filesystem::path dir_;
  uint64_t reserve_ = 0;
  bool keep_ = false;
};

}  // namespace isobox::runtime
