// A volume's filesystem (server/control/volumes.h): an ext4 image of its own, allocated in
// full on the host's filesystem when the volume is made, on its own loop device, mounted
// by isoboxd as a detached mount that is never attached to the host's tree.
//
// Choice: a size limit that holds against sandbox root and against the content API alike
// needs a filesystem as big as the limit (as a sandbox's disk, runtime/disk.h); project
// quotas would need the host's state filesystem formatted and mounted for them. Unlike a
// sandbox's disk, a volume outlives sandboxes and isoboxd, so its image is not sparse: the
// space is taken from the host's filesystem at create (fallocate), so that a volume never
// finds the host full later, and it is a journalled ext4 (a crash of the host keeps what
// was synced). The root directory is owned by on-disk uid/gid 1000 (kVolumeOwnerId), the
// sandbox `user`: each sandbox gets its own mount of the filesystem, idmapped into its uid
// range (MountFor), so files appear with the same owners in every sandbox at once.
//
// Lifetime: the loop device autoclears; the filesystem lives as long as a mount of it (a
// sandbox's, isoboxd's) does. Open finds a loop device still attached to the image (a kept
// sandbox holds the filesystem across a restart of isoboxd) and mounts that same
// filesystem again: an image is never attached twice, which would be two filesystems on
// one file.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/loop_device.h"

namespace isobox::runtime {

// The on-disk owner of a new volume's root directory: the sandbox `user`.
inline constexpr uint32_t kVolumeOwnerId = 1000;
// The smallest volume mke2fs makes a useful ext4 of (journal included).
inline constexpr uint64_t kMinVolumeBytes = 16ull << 20;

// Makes `image` (which must not exist): `size_bytes` allocated in full, formatted as ext4
// with no reserved blocks, its root owned by kVolumeOwnerId. Refused with errno ENOSPC
// (HTTP 507) when the host's filesystem would keep less than `host_reserve` bytes free.
// A failure leaves no file.
Status CreateVolumeImage(const std::filesystem::path& image, uint64_t size_bytes,
                         uint64_t host_reserve);

struct VolumeSpace {
  uint64_t size = 0;  // bytes the filesystem holds for files
  uint64_t free = 0;
};

class VolumeDisk {
 public:
  // The filesystem of `image`: on the loop device still attached to it, else on a new one.
  static Result<VolumeDisk> Open(const std::filesystem::path& image);

  VolumeDisk(VolumeDisk&&) noexcept = default;
  VolumeDisk& operator=(VolumeDisk&&) noexcept = default;

  // isoboxd's mount: an O_PATH-able fd of the volume's root directory (nosuid, nodev,
  // noexec), with the on-disk owners. Only isoboxd holds it.
  int root() const { return mount_.Get(); }
  // A new detached mount of the same filesystem for one sandbox: read-write, nosuid,
  // nodev, idmapped through `idmap_userns_fd` (idmap.h CreateMappedUserns of its range),
  // so that on-disk id N appears as id N inside that sandbox.
  Result<UniqueFd> MountFor(int idmap_userns_fd) const;
  Result<VolumeSpace> Space() const;

 private:
  VolumeDisk(LoopDevice loop, UniqueFd mount) : loop_(std::move(loop)), mount_(std::move(mount)) {}

  LoopDevice loop_;
  UniqueFd mount_;
};

}  // namespace isobox::runtime
