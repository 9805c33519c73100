#include "runtime/disk_pool.h"

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

#include <algorithm>
#include <optional>

#include "base/log.h"
#include "runtime/loop_device.h"
#include "runtime/udev_rule.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMaxDefaultSize = 64ull << 30;
constexpr uint64_t kMinDefaultSize = 2ull << 30;
constexpr uint64_t kMaxReserve = 1ull << 30;

Result<uint64_t> HostFree(const fs::path& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) < 0) return SysError("statvfs {}", dir.string());
  return uint64_t{st.f_bavail} * st.f_frsize;
}

// The pool image at `size` bytes, all of them allocated on the host's filesystem.
Status AllocateImage(const fs::path& image, uint64_t size, const fs::path& state_dir) {
  UniqueFd fd(::open(image.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysError("open {}", image.string());
  struct stat st {};
  if (::fstat(fd.Get(), &st) < 0) return SysError("stat {}", image.string());
  if (st.st_size == 0) {
    // Copy-on-write filesystems (btrfs) would allocate anew at each overwrite: the space
    // fallocate takes would not be the space the pool's writes land in. Where there is no
    // such flag (ext4, xfs), the ioctl fails and nothing is needed.
    int flags = 0;
    if (::ioctl(fd.Get(), FS_IOC_GETFLAGS, &flags) == 0) {
      flags |= FS_NOCOW_FL;
      (void)::ioctl(fd.Get(), FS_IOC_SETFLAGS, &flags);
    }
  }
  uint64_t allocated = uint64_t{static_cast<uint64_t>(st.st_blocks)} * 512;
  ASSIGN_OR_RETURN(uint64_t host_free, HostFree(state_dir));
  if (size > allocated && size - allocated + DiskPool::kHostReserve > host_free) {
    uint64_t most = host_free + allocated > DiskPool::kHostReserve
                        ? (host_free + allocated - DiskPool::kHostReserve) / kMiB
                        : 0;
    return MakeError(ErrorCode::kResourceExhausted,
                     "a sandbox disk pool of {} MiB does not fit: the filesystem of {} has {} MiB "
                     "free and keeps {} MiB of it free; give --disk-pool-mb {} or less",
                     size / kMiB, state_dir.string(), host_free / kMiB,
                     DiskPool::kHostReserve / kMiB, most);
  }
  if (static_cast<uint64_t>(st.st_size) > size &&
      ::ftruncate(fd.Get(), static_cast<off_t>(size)) < 0) {
    return SysError("shrink {}", image.string());
  }
  // SECURITY: the pool's space is taken from the host's filesystem now, in full; sandboxes'
  // writes land in it and can never take more of the host's space.
  if (::fallocate(fd.Get(), 0, 0, static_cast<off_t>(size)) < 0) {
    if (errno == EOPNOTSUPP) {
      return SysError("allocate {} (the filesystem of {} cannot allocate space ahead)",
                      image.string(), state_dir.string());
    }
    return SysError("allocate {} MiB for {}", size / kMiB, image.string());
  }
  return Ok();
}

// A new ext4 on the pool image: 4 KiB blocks, an inode per 256 KiB (a disk image is one
// inode), no reserved blocks (isoboxd writes as root), no journal (never kept across a
// format, see the header). nodiscard: mke2fs would otherwise punch the whole image out of
// the host's filesystem.
Status FormatPool(const fs::path& image) {
  return RunMke2fs({"-q", "-F", "-t", "ext4", "-b", "4096", "-i", "262144", "-m", "0", "-L",
                    "isobox-pool", "-O", "^has_journal", "-E",
                    "lazy_itable_init=1,nodiscard,root_owner=0:0", image.string()});
}

// A detached mount of the ext4 on `loop`: the pool's filesystem as it is when it is still
// alive (its loop device was left attached), else a new superblock.
Result<UniqueFd> MountPool(const LoopDevice& loop) {
  UniqueFd fs(::fsopen("ext4", FSOPEN_CLOEXEC));
  if (!fs) return SysError("fsopen ext4");
  if (::fsconfig(fs.Get(), FSCONFIG_SET_STRING, "source", loop.path.c_str(), 0) < 0) {
    return SysError("ext4 source {}", loop.path);
  }
  // As a sandbox's disk (runtime/disk.cc): nothing here is kept across a format, so
  // nothing needs zeroed inode tables or cache flushes. No discard, ever: a discard would
  // punch the pool's image and give its space back to the host's filesystem.
  for (const char* flag : {"noinit_itable", "no_prefetch_block_bitmaps", "nobarrier"}) {
    if (::fsconfig(fs.Get(), FSCONFIG_SET_FLAG, flag, nullptr, 0) < 0) {
      return SysError("ext4 option {}", flag);
    }
  }
  if (::fsconfig(fs.Get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    return SysError("mount ext4 of {}", loop.path);
  }
  // SECURITY: disk images only: nothing on the pool is executed, setuid or a device. The
  // mount is never attached anywhere: no process but isoboxd reaches it, and nothing
  // that walks the host's mounts (fstrim, which would discard its free space) sees it.
  UniqueFd mount(::fsmount(fs.Get(), FSMOUNT_CLOEXEC,
                           MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!mount) return SysError("fsmount ext4 of {}", loop.path);
  return mount;
}

// The pool's loop device: the one still attached to `image` (the pool's filesystem lives
// on), else a new one on a freshly allocated and formatted image of `size_bytes` (0: the
// image's size as it is, or the default).
Result<LoopDevice> PoolLoop(const fs::path& state_dir, const fs::path& image, uint64_t size_bytes) {
  if (::access(image.c_str(), F_OK) == 0) {
    ASSIGN_OR_RETURN(std::optional<LoopDevice> loop, FindLoop(image));
    if (loop) {
      LOG_INFO("disk pool {}: still attached to {}; sandboxes of an earlier isoboxd use it",
               image.string(), loop->path);
      return std::move(*loop);
    }
  }
  uint64_t size = size_bytes;
  struct stat st {};
  if (size == 0 && ::stat(image.c_str(), &st) == 0) size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ASSIGN_OR_RETURN(uint64_t host_free, HostFree(state_dir));
    size = DiskPool::DefaultSize(host_free);
  }
  size -= size % kMiB;
  if (size < DiskPool::kMinSize) {
    return MakeError(ErrorCode::kInvalidArgument, "a disk pool of {} MiB: at least {} MiB",
                     size / kMiB, DiskPool::kMinSize / kMiB);
  }
  RETURN_IF_ERROR(AllocateImage(image, size, state_dir));
  RETURN_IF_ERROR(FormatPool(image));
  UniqueFd backing(::open(image.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!backing) return SysError("open {}", image.string());
  // With autoclear, the loop device lives as long as the pool's filesystem.
  ASSIGN_OR_RETURN(LoopDevice loop, AttachLoop(backing.Get(), LO_FLAGS_AUTOCLEAR));
  LOG_INFO("disk pool {}: {} MiB, formatted, on {}", image.string(), size / kMiB, loop.path);
  return loop;
}

// Disk images of versions before the pool lay in <state>/disks on the host's filesystem:
// a cache, now unused.
void RemoveOldImages(const fs::path& state_dir) {
  fs::path old = state_dir / "disks";
  std::error_code ec;
  if (!fs::is_directory(old, ec)) return;
  fs::remove_all(old, ec);
  if (ec) LOG_WARN("remove {}: {}", old.string(), ec.message());
}

}  // namespace

uint64_t DiskPool::DefaultSize(uint64_t host_free) {
  return std::max(kMinDefaultSize, std::min(kMaxDefaultSize, host_free / 4));
}

uint64_t DiskPool::ReserveFor(uint64_t size) { return std::min(kMaxReserve, size / 16); }

Result<DiskPool> DiskPool::Open(const fs::path& state_dir, uint64_t size_bytes) {
  fs::path image = state_dir / "disk-pool.img";
  // Before the first loop device: the host's udev must never probe one of them.
  if (auto rule = InstallUdevRule(state_dir); !rule) {
    if (UdevRuns()) return tl::unexpected(rule.error().WithContext("udev rule for loop devices"));
    LOG_WARN("udev rule for loop devices: {} (no udevd runs)", rule.error().message);
  }
  RemoveOldImages(state_dir);
  ASSIGN_OR_RETURN(LoopDevice loop,
                   WithContext(PoolLoop(state_dir, image, size_bytes), "disk pool"));
  ASSIGN_OR_RETURN(UniqueFd mount, WithContext(MountPool(loop), "disk pool"));
  // SECURITY: only host root reaches the images (the directory is 0700; the pool's mount
  // is reachable through isoboxd's fd only).
  std::string images = PoolImagesDirName(state_dir);
  if (::mkdirat(mount.Get(), images.c_str(), 0700) < 0 && errno != EEXIST) {
    return SysError("disk pool: mkdir {}", images);
  }
  struct statfs st {};
  if (::fstatfs(mount.Get(), &st) < 0) return SysError("disk pool: statfs");
  struct stat image_st {};
  if (size_bytes != 0 && ::stat(image.c_str(), &image_st) == 0 &&
      static_cast<uint64_t>(image_st.st_size) != size_bytes - size_bytes % kMiB) {
    LOG_WARN(
        "disk pool {}: {} MiB, not the {} MiB asked for: sandboxes of an earlier "
        "isoboxd use it; the new size takes effect at a start with none left",
        image.string(), image_st.st_size / kMiB, size_bytes / kMiB);
  }
  return DiskPool(state_dir, std::move(mount), ReserveFor(uint64_t{st.f_blocks} * st.f_bsize));
}

DiskPool::DiskPool(fs::path state_dir, UniqueFd mount, uint64_t reserve)
    : state_dir_(std::move(state_dir)), mount_(std::move(mount)), reserve_(reserve) {
  dir_ = fs::path(fmt::format("/proc/{}/fd/{}", ::getpid(), mount_.Get())) /
         PoolImagesDirName(state_dir_);
}

DiskPool::~DiskPool() {
  if (!mount_ || keep_) return;
  RemoveUdevRule(state_dir_);
}

Result<DiskPoolSpace> DiskPool::Space() const {
  struct statfs st {};
  if (::fstatfs(mount_.Get(), &st) < 0) return SysError("statfs the disk pool");
  return DiskPoolSpace{.size = uint64_t{st.f_blocks} * st.f_bsize,
                       .free = uint64_t{st.f_bavail} * st.f_bsize,
                       .reserve = reserve_};
}

Status DiskPool::Admit() const {
  ASSIGN_OR_RETURN(DiskPoolSpace space, Space());
  if (space.free >= space.reserve) return Ok();
  return tl::unexpected(Error{
      ErrorCode::kResourceExhausted, ENOSPC,
      fmt::format("the sandbox disk pool is full: {} MiB free of {} MiB, below its reserve of "
                  "{} MiB; sandboxes' disks have filled it (kill sandboxes, or give isoboxd a "
                  "larger --disk-pool-mb)",
                  space.free / kMiB, space.size / kMiB, space.reserve / kMiB)});
}

}  // namespace isobox::runtime
