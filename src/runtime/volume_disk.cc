#include "runtime/volume_disk.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <optional>

#include "base/log.h"
#include "base/scope_guard.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1ull << 20;

Result<uint64_t> HostFree(const fs::path& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) < 0) return SysError("statvfs {}", dir.string());
  return uint64_t{st.f_bavail} * st.f_frsize;
}

// The image's space, taken from the host's filesystem now and in full.
Status Allocate(int fd, const fs::path& image, uint64_t size_bytes, uint64_t host_reserve) {
  // Copy-on-write filesystems (btrfs) would allocate anew at each overwrite: the space
  // taken here would not be the space the volume's writes land in. Elsewhere the ioctl
  // fails and nothing is needed (as the disk pool's image, disk_pool.cc).
  int flags = 0;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    flags |= FS_NOCOW_FL;
    (void)::ioctl(fd, FS_IOC_SETFLAGS, &flags);
  }
  ASSIGN_OR_RETURN(uint64_t host_free, HostFree(image.parent_path()));
  if (size_bytes + host_reserve > host_free) {
    return tl::unexpected(
        Error{ErrorCode::kResourceExhausted, ENOSPC,
              fmt::format("a volume of {} MiB does not fit: the state directory's filesystem "
                          "has {} MiB free and keeps {} MiB of it free",
                          size_bytes / kMiB, host_free / kMiB, host_reserve / kMiB)});
  }
  // SECURITY: a volume's space is the host's no more: filling it is ENOSPC in the volume,
  // never a full host filesystem (isoboxd's database and audit log live there).
  if (::fallocate(fd, 0, 0, static_cast<off_t>(size_bytes)) < 0) {
    return SysError("allocate {} MiB for {}", size_bytes / kMiB, image.string());
  }
  return Ok();
}

// A detached mount of the ext4 on `device` with `attrs`: a new superblock the first time,
// the same one while a mount of it lives (the kernel shares one per block device).
Result<UniqueFd> MountExt4(const std::string& device, uint64_t attrs) {
  UniqueFd fs(::fsopen("ext4", FSOPEN_CLOEXEC));
  if (!fs) return SysError("fsopen ext4");
  if (::fsconfig(fs.Get(), FSCONFIG_SET_STRING, "source", device.c_str(), 0) < 0) {
    return SysError("ext4 source {}", device);
  }
  if (::fsconfig(fs.Get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    return SysError("mount the volume's ext4 on {}", device);
  }
  UniqueFd mount(::fsmount(fs.Get(), FSMOUNT_CLOEXEC, static_cast<unsigned>(attrs)));
  if (!mount) return SysError("fsmount the volume's ext4 on {}", device);
  return mount;
}

}  // namespace

Status CreateVolumeImage(const fs::path& image, uint64_t size_bytes, uint64_t host_reserve) {
  if (size_bytes < kMinVolumeBytes || size_bytes % kMiB != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "a volume of {} bytes: whole MiB, at least {}",
                     size_bytes, kMinVolumeBytes / kMiB);
  }
  UniqueFd fd(::open(image.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysError("create {}", image.string());
  ScopeGuard remove([&] { ::unlink(image.c_str()); });
  RETURN_IF_ERROR(Allocate(fd.Get(), image, size_bytes, host_reserve));
  fd.Reset();
  // No reserved blocks: sandbox root and `user` fill the same space. nodiscard: mke2fs
  // would otherwise punch the allocated image back out of the host's filesystem. The
  // inode tables and journal are zeroed by the kernel after the first mount (ext4lazyinit),
  // not here, so that a create does not write the whole metadata up front.
  std::string owner = fmt::format("root_owner={0}:{0}", kVolumeOwnerId);
  RETURN_IF_ERROR(
      RunMke2fs({"-q", "-F", "-t", "ext4", "-m", "0", "-L", "isobox-volume", "-E",
                 "lazy_itable_init=1,lazy_journal_init=1,nodiscard," + owner, image.string()}));
  remove.Cancel();
  return Ok();
}

Result<VolumeDisk> VolumeDisk::Open(const fs::path& image) {
  // SECURITY: one filesystem per image: a loop device still attached to it (a sandbox of
  // an earlier isoboxd holds the filesystem) is used again, never a second one.
  ASSIGN_OR_RETURN(std::optional<LoopDevice> found, FindLoop(image));
  LoopDevice loop;
  if (found) {
    loop = std::move(*found);
  } else {
    UniqueFd backing(::open(image.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!backing) return SysError("open {}", image.string());
    // SECURITY: no partition scan (loop_device.h); autoclear: the device goes with the
    // filesystem's last mount.
    ASSIGN_OR_RETURN(loop, AttachLoop(backing.Get(), LO_FLAGS_AUTOCLEAR));
  }
  // SECURITY: isoboxd's own mount executes nothing and honours no setuid bit or device
  // node that a sandbox left in the volume.
  ASSIGN_OR_RETURN(UniqueFd mount,
                   MountExt4(loop.path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  return VolumeDisk(std::move(loop), std::move(mount));
}

Result<UniqueFd> VolumeDisk::MountFor(int idmap_userns_fd) const {
  // SECURITY: setuid bits and device nodes in a volume do nothing in any sandbox.
  ASSIGN_OR_RETURN(UniqueFd mount, MountExt4(loop_.path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  struct mount_attr attr {};
  // SECURITY: the sandbox's own mapping: on-disk ids 0-65535 are its ids 0-65535, host
  // ids of its slot on the host; any other on-disk id is the overflow id there.
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(idmap_userns_fd);
  if (::mount_setattr(mount.Get(), "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    return SysError("idmap the volume's mount");
  }
  return mount;
}

Result<VolumeSpace> VolumeDisk::Space() const {
  struct statfs st {};
  if (::fstatfs(mount_.Get(), &st) < 0) return SysError("statfs the volume");
  return VolumeSpace{.size = uint64_t{st.f_blocks} * st.f_bsize,
                     .free = uint64_t{st.f_bavail} * st.f_bsize};
}

}  // namespace isobox::runtime
