#include "runtime/disk.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <string>
#include <vector>

#include "base/child_error.h"
#include "base/log.h"
#include "base/scope_guard.h"
#include "base/thread_priority.h"
#include "runtime/loop_device.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMinDiskBytes = 16ull << 20;
// A returned disk with more files than this is dropped rather than emptied: removing them
// would cost more than making a new disk.
constexpr uint64_t kMaxRecycledInodes = 4096;

// Runs mke2fs on `image`, with kLayerDirs made from a staging directory.
Status Format(const fs::path& image) {
  fs::path staging = image.string() + ".d";
  std::error_code ec;
  fs::remove_all(staging, ec);
  if (::mkdir(staging.c_str(), 0700) < 0) return SysError("mkdir {}", staging.string());
  ScopeGuard remove_staging([&] { fs::remove_all(staging, ec); });
  for (const LayerDir& dir : kLayerDirs) {
    fs::path path = staging / dir.path;
    if (::mkdir(path.c_str(), dir.mode) < 0 || ::chmod(path.c_str(), dir.mode) < 0) {
      return SysError("mkdir {}", path.string());
    }
  }
  return RunMke2fs({"-q", "-F", "-t", "ext4", "-m", "0", "-O", "^has_journal", "-E",
                    "lazy_itable_init=1,nodiscard,root_owner=0:0", "-d", staging.string(),
                    image.string()});
}

// The formatted image for `size_bytes`, made once (atomically renamed into place).
Result<fs::path> PristineImage(const fs::path& dir, uint64_t size_bytes) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  // "-layers": images of earlier versions, without kLayerDirs, are not reused.
  fs::path image = dir / fmt::format("ext4-{}-layers.img", size_bytes);
  if (::access(image.c_str(), R_OK) == 0) return image;
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return SysError("mkdir {}", dir.string());
  fs::path partial = dir / fmt::format(".ext4-{}-layers.img.{}", size_bytes, ::getpid());
  {
    UniqueFd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return SysError("create {}", partial.string());
    if (::ftruncate(fd.Get(), static_cast<off_t>(size_bytes)) < 0) {
      return SysError("truncate {}", partial.string());
    }
  }
  Status formatted = Format(partial);
  if (formatted && ::rename(partial.c_str(), image.c_str()) == 0) return image;
  ::unlink(partial.c_str());
  RETURN_IF_ERROR(formatted);
  return SysError("rename {}", image.string());
}

// The ranges of `fd` that hold data (not holes), in order.
Result<std::vector<std::pair<off_t, off_t>>> DataRanges(int fd, off_t end) {
  std::vector<std::pair<off_t, off_t>> ranges;
  for (off_t data = ::lseek(fd, 0, SEEK_DATA); data >= 0 && data < end;) {
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return SysError("seek a hole");
    ranges.emplace_back(data, std::min(hole, end));
    data = ::lseek(fd, hole, SEEK_DATA);
  }
  return ranges;
}

// A new unnamed file in `dir`, `size_bytes` long and all hole.
Result<UniqueFd> EmptyBackingFile(const fs::path& dir, uint64_t size_bytes) {
  UniqueFd out(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!out) return SysError("create disk image in {}", dir.string());
  if (::ftruncate(out.Get(), static_cast<off_t>(size_bytes)) < 0) return SysError("truncate disk");
  return out;
}

// Copies [offset, end) of `in` into `out` at the same offsets: in the kernel within one
// filesystem, through a buffer across two (copy_file_range refuses that, EXDEV).
Status CopyRange(int in, int out, off_t offset, off_t end) {
  off_t in_off = offset, out_off = offset;
  while (in_off < end) {
    ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, static_cast<size_t>(end - in_off), 0);
    if (n > 0) continue;
    if (n == 0) return Ok();
    if (errno != EXDEV && errno != EOPNOTSUPP && errno != EINVAL) return SysError("copy_file_range");
    break;
  }
  std::vector<char> buffer(1 << 20);
  while (in_off < end) {
    ssize_t n = ::pread(in, buffer.data(), std::min<size_t>(buffer.size(), end - in_off), in_off);
    if (n < 0) return SysError("read");
    if (n == 0) return Ok();
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::pwrite(out, buffer.data() + done, static_cast<size_t>(n - done), in_off + done);
      if (w < 0) return SysError("write");
      done += w;
    }
    in_off += n;
  }
  return Ok();
}

// Copies the data ranges of `image` into `out` at the same offsets (a sparse copy) and
// returns them.
Result<std::vector<std::pair<off_t, off_t>>> CopyData(const fs::path& image, int out,
                                                      uint64_t size_bytes) {
  UniqueFd in(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return SysError("open {}", image.string());
  ASSIGN_OR_RETURN(auto ranges, WithContext(DataRanges(in.Get(), static_cast<off_t>(size_bytes)),
                                            fmt::format("copy {}", image.string())));
  for (auto [offset, end] : ranges) {
    RETURN_IF_ERROR(WithContext(CopyRange(in.Get(), out, offset, end),
                                fmt::format("copy {}", image.string())));
  }
  return ranges;
}

// Reads `ranges` of the loop device into its page cache, where ext4 looks for its
// metadata: the first allocations on a new disk (the overlay's work directories) then
// find their bitmaps and inode tables cached instead of reading each through the loop
// device (~0.1 ms per block on a create's path). Without readahead, on the device and on
// its backing file alike: the ranges are all that is wanted (~0.6 MiB), and readahead
// past them read the image's holes twice over, a few ms of CPU per disk.
void WarmUp(int loop, int backing, const std::vector<std::pair<off_t, off_t>>& ranges) {
  (void)::posix_fadvise(loop, 0, 0, POSIX_FADV_RANDOM);
  (void)::posix_fadvise(backing, 0, 0, POSIX_FADV_RANDOM);
  std::vector<char> buffer(256 * 1024);
  for (auto [offset, end] : ranges) {
    while (offset < end) {
      size_t chunk = std::min<size_t>(buffer.size(), static_cast<size_t>(end - offset));
      ssize_t n = ::pread(loop, buffer.data(), chunk, offset);
      if (n <= 0) break;  // only a warm-up: the disk works without it
      offset += n;
    }
  }
  // The backing file is the loop device's own (LOOP_CONFIGURE shares it): the sandbox's
  // reads through the disk read ahead as usual from here on.
  (void)::posix_fadvise(backing, 0, 0, POSIX_FADV_NORMAL);
}

Result<UniqueFd> MountExt4(const std::string& device) {
  UniqueFd fs(::fsopen("ext4", FSOPEN_CLOEXEC));
  if (!fs) return SysError("fsopen ext4");
  if (::fsconfig(fs.Get(), FSCONFIG_SET_STRING, "source", device.c_str(), 0) < 0) {
    return SysError("ext4 source {}", device);
  }
  // No background work per disk (ext4's lazyinit thread). The image's inode tables are
  // left unzeroed (mke2fs lazy_itable_init): zeroing them would write ~16 MiB through
  // the loop device into the host's filesystem for every disk, only for a later fsck's
  // benefit, and a sandbox's disk is never checked: it is thrown away with the sandbox.
  // The block bitmaps are read by WarmUp below, with the rest of the metadata.
  // No cache flushes either (nobarrier): a flush reaches the loop device as an fsync of
  // the backing file, which wrote the disk's dirty metadata (~0.7 MB, at the unmount of
  // every disk) to the host's disk. Nothing on this disk outlives the sandbox, so it has
  // nothing to make durable.
  // Online discard: what the sandbox deletes is punched out of the image at once, so a
  // disk holds only as much of the disk pool (runtime/disk_pool.h) as it has files, not
  // as much as it ever wrote; a disk given back and emptied holds no more than a new one.
  for (const char* flag : {"noinit_itable", "no_prefetch_block_bitmaps", "nobarrier", "discard"}) {
    if (::fsconfig(fs.Get(), FSCONFIG_SET_FLAG, flag, nullptr, 0) < 0) {
      return SysError("ext4 option {}", flag);
    }
  }
  if (::fsconfig(fs.Get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    return SysError("create ext4 on loop device");
  }
  // SECURITY: nothing on the sandbox's own disk can be setuid or a device node.
  UniqueFd mount(::fsmount(fs.Get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!mount) return SysError("fsmount ext4");
  return mount;
}

}  // namespace

namespace {

// A disk made from `image` (a formatted or a kept one) of `size_bytes`: a sparse copy in
// a new unnamed file in `images_dir`, on a loop device, mounted.
Result<SandboxDisk> DiskFrom(const fs::path& images_dir, const fs::path& image,
                             uint64_t size_bytes) {
  // The loop device is attached to the file while it is still empty: LOOP_CONFIGURE
  // fsyncs its backing file, and with the image copied first that wrote the image's
  // ~1 MB of metadata to the host's disk for every sandbox (the copy is thrown away with
  // the sandbox, usually before writeback would ever have written it).
  ASSIGN_OR_RETURN(UniqueFd copy, EmptyBackingFile(images_dir, size_bytes));
  ASSIGN_OR_RETURN(LoopDevice loop, AttachLoop(copy.Get(), LO_FLAGS_AUTOCLEAR));
  ScopeGuard detach([&] { (void)::ioctl(loop.fd.Get(), LOOP_CLR_FD, 0); });
  ASSIGN_OR_RETURN(auto ranges, CopyData(image, copy.Get(), size_bytes));
  // The copy went into the backing file, past the device's page cache: whatever read the
  // device meanwhile (a udev probe on the host) cached holes; drop it before ext4 reads.
  if (::ioctl(loop.fd.Get(), BLKFLSBUF, 0) < 0) return SysError("flush {}", loop.path);
  ASSIGN_OR_RETURN(UniqueFd mounted, MountExt4(loop.path));
  detach.Cancel();
  WarmUp(loop.fd.Get(), copy.Get(), ranges);
  // The loop device and the image live as long as the mount; the image's fd is kept for
  // KeepDisk.
  return SandboxDisk{.mount = std::move(mounted), .image = std::move(copy)};
}

}  // namespace

Result<SandboxDisk> CreateSandboxDisk(const fs::path& images_dir, uint64_t size_bytes) {
  if (size_bytes < kMinDiskBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "disk of {} bytes: at least {} MiB", size_bytes,
                     kMinDiskBytes >> 20);
  }
  ASSIGN_OR_RETURN(fs::path image, PristineImage(images_dir, size_bytes));
  return DiskFrom(images_dir, image, size_bytes);
}

Status KeepDisk(const SandboxDisk& disk, const fs::path& path) {
  if (!disk.mount || !disk.image) return MakeError(ErrorCode::kInternal, "keep disk: no disk");
  // nobarrier (MountExt4): syncfs writes the filesystem into its image's page cache, from
  // where the copy reads it.
  UniqueFd root(::openat(disk.mount.Get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return SysError("keep disk: open");
  if (::syncfs(root.Get()) < 0) return SysError("keep disk: sync its filesystem");
  struct stat image {};
  if (::fstat(disk.image.Get(), &image) < 0) return SysError("keep disk: stat");
  const auto size = static_cast<uint64_t>(image.st_size);
  fs::path partial = path.string() + ".partial";
  UniqueFd out(::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out) return SysError("keep disk: create {}", partial.string());
  ScopeGuard remove([&] { ::unlink(partial.c_str()); });
  if (::ftruncate(out.Get(), static_cast<off_t>(size)) < 0) return SysError("keep disk: truncate");
  ASSIGN_OR_RETURN(auto ranges, DataRanges(disk.image.Get(), static_cast<off_t>(size)));
  for (auto [offset, end] : ranges) {
    RETURN_IF_ERROR(WithContext(CopyRange(disk.image.Get(), out.Get(), offset, end),
                                fmt::format("keep disk: copy to {}", partial.string())));
  }
  if (::fsync(out.Get()) < 0) return SysError("keep disk: sync {}", partial.string());
  if (::rename(partial.c_str(), path.c_str()) < 0) return SysError("keep disk: name {}", path.string());
  remove.Cancel();
  UniqueFd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || ::fsync(dir.Get()) < 0) {
    return SysError("keep disk: sync {}", path.parent_path().string());
  }
  return Ok();
}

Result<SandboxDisk> OpenKeptDisk(const fs::path& images_dir, const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) return SysError("kept disk {}", path.string());
  return WithContext(DiskFrom(images_dir, path, static_cast<uint64_t>(st.st_size)),
                     fmt::format("kept disk {}", path.string()));
}

Result<DiskFree> FreeSpaceOf(int disk) {
  struct statfs st {};
  if (::fstatfs(disk, &st) < 0) return SysError("statfs disk");
  return DiskFree{.blocks = st.f_bfree, .inodes = st.f_ffree};
}

Status EmptyDisk(int disk, const DiskFree& fresh, uint64_t max_inodes) {
  ASSIGN_OR_RETURN(DiskFree before, FreeSpaceOf(disk));
  if (before.inodes + max_inodes < fresh.inodes) {
    return MakeError(ErrorCode::kResourceExhausted, "{} files left on the disk, more than {}",
                     fresh.inodes - before.inodes, max_inodes);
  }
  // SECURITY: what the last sandbox wrote goes, all of it: the layers' directories are
  // removed whole (their modes, owners and extended attributes with them) and made anew.
  // remove_all removes links, never what they point to; nothing else can change the tree
  // meanwhile, its sandbox being gone (the caller's guarantee).
  fs::path root = fmt::format("/proc/self/fd/{}", disk);
  for (const char* top : {"upper", "work"}) {
    std::error_code ec;
    fs::remove_all(root / top, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "empty disk: remove {}: {}", top, ec.message());
  }
  for (const LayerDir& dir : kLayerDirs) {
    if (::mkdirat(disk, dir.path, dir.mode) < 0 || ::fchmodat(disk, dir.path, dir.mode, 0) < 0) {
      return SysError("empty disk: mkdir {}", dir.path);
    }
  }
  // A disk that lost a write (its disk pool was full, runtime/disk_pool.h) may read back
  // stale metadata: it is never handed out again. syncfs reports any write error of the
  // disk's filesystem since it was made that nothing has reported yet, and this one's
  // own; it writes what is still dirty into the pool's page cache (no flush: nobarrier).
  UniqueFd synced(::openat(disk, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!synced) return SysError("empty disk: open");
  if (::syncfs(synced.Get()) < 0) return SysError("empty disk: it lost writes");
  // SECURITY: the disk is handed out again only as a new disk would be: with every block
  // and inode free that a new one has. Anything the last sandbox left that something still
  // holds (an open file, a mount of its overlay) would keep its inode and blocks.
  ASSIGN_OR_RETURN(DiskFree after, FreeSpaceOf(disk));
  if (after != fresh) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "empty disk: {} blocks and {} inodes free, a new disk has {} and {}",
                     after.blocks, after.inodes, fresh.blocks, fresh.inodes);
  }
  return Ok();
}

DiskReserve::DiskReserve(fs::path images_dir, SpareCount spares)
    : images_dir_(std::move(images_dir)),
      spare_count_(spares),
      worker_([this](std::stop_token stop) { Run(stop); }) {}

DiskReserve::~DiskReserve() {
  worker_.request_stop();
  wake_.notify_all();
}

Result<SandboxDisk> DiskReserve::Take(uint64_t size_bytes) {
  {
    std::lock_guard lock(mutex_);
    std::deque<SandboxDisk>& ready = spares_[size_bytes];
    if (!ready.empty()) {
      SandboxDisk disk = std::move(ready.front());
      ready.pop_front();
      wake_.notify_all();
      return disk;
    }
    TargetOf(size_bytes).Missed(std::chrono::steady_clock::now());
  }
  wake_.notify_all();  // the size is wanted now: make spares while this one is made here
  return Make(size_bytes);
}

void DiskReserve::Want(uint64_t size_bytes) {
  {
    std::lock_guard lock(mutex_);
    spares_[size_bytes];
  }
  wake_.notify_all();
}

void DiskReserve::Return(uint64_t size_bytes, SandboxDisk disk) {
  if (!disk.mount) return;
  {
    std::lock_guard lock(mutex_);
    returned_.push_back({size_bytes, std::move(disk)});
  }
  wake_.notify_all();
}

DiskReserve::Counts DiskReserve::counts() const {
  std::lock_guard lock(mutex_);
  return counts_;
}

size_t DiskReserve::Ready(uint64_t size_bytes) const {
  std::lock_guard lock(mutex_);
  auto it = spares_.find(size_bytes);
  return it == spares_.end() ? 0 : it->second.size();
}

size_t DiskReserve::Target(uint64_t size_bytes) const {
  std::lock_guard lock(mutex_);
  auto it = targets_.find(size_bytes);
  return it == targets_.end() ? spare_count_.base
                              : it->second.Get(std::chrono::steady_clock::now());
}

SpareTarget& DiskReserve::TargetOf(uint64_t size_bytes) {
  return targets_.try_emplace(size_bytes, spare_count_).first->second;
}

Result<SandboxDisk> DiskReserve::Make(uint64_t size_bytes) {
  ASSIGN_OR_RETURN(SandboxDisk disk, CreateSandboxDisk(images_dir_, size_bytes));
  auto free = FreeSpaceOf(disk.mount.Get());
  std::lock_guard lock(mutex_);
  ++counts_.made;
  if (free) fresh_.try_emplace(size_bytes, *free);
  return disk;
}

uint64_t DiskReserve::ShortSize(SpareTarget::TimePoint now) {
  for (const auto& [size, ready] : spares_) {
    if (ready.size() < TargetOf(size).Get(now)) return size;
  }
  return 0;
}

SandboxDisk DiskReserve::TakeSurplus(SpareTarget::TimePoint now) {
  for (auto& [size, ready] : spares_) {
    if (ready.size() > 2 * TargetOf(size).Get(now)) {
      SandboxDisk disk = std::move(ready.back());  // the one that waited least
      ready.pop_back();
      return disk;
    }
  }
  return SandboxDisk();
}

void DiskReserve::Recycle(Returned returned, std::unique_lock<std::mutex>& lock) {
  auto ready = spares_.find(returned.size_bytes);
  auto fresh = fresh_.find(returned.size_bytes);
  Status emptied = MakeError(ErrorCode::kFailedPrecondition, "spares of its size are full");
  // Returned disks may fill up to twice the spares: a loop of creates and kills then takes
  // back what it took, and no new disk is made.
  if (ready != spares_.end() && fresh != fresh_.end() &&
      ready->second.size() <
          2 * TargetOf(returned.size_bytes).Get(std::chrono::steady_clock::now())) {
    DiskFree fresh_free = fresh->second;
    lock.unlock();
    emptied = EmptyDisk(returned.disk.mount.Get(), fresh_free, kMaxRecycledInodes);
    lock.lock();
    ready = spares_.find(returned.size_bytes);  // the map may have changed meanwhile
    if (emptied && ready != spares_.end()) {
      ++counts_.reused;
      ready->second.push_front(std::move(returned.disk));
      return;
    }
  }
  ++counts_.dropped;
  LOG_DEBUG("returned disk of {} bytes dropped: {}", returned.size_bytes,
            emptied ? "its size is no longer wanted" : emptied.error().message);
  lock.unlock();
  returned.disk = SandboxDisk();  // the unmount, off the lock
  lock.lock();
}

void DiskReserve::Run(std::stop_token stop) {
  RunInBackground();  // spares wait for creates, not the other way round
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    uint64_t size = 0;
    SandboxDisk surplus;
    // Woken by a take or a return; the timeout notices targets that fell in the quiet.
    bool work = wake_.wait_for(lock, stop, spare_count_.shrink_after, [&] {
      auto now = std::chrono::steady_clock::now();
      return !returned_.empty() || (size = ShortSize(now)) != 0 ||
             (surplus = TakeSurplus(now)).mount;
    });
    if (stop.stop_requested()) return;
    if (!work) continue;
    if (surplus.mount) {
      lock.unlock();
      surplus = SandboxDisk();  // the unmount, off the lock
      lock.lock();
      continue;
    }
    if (!returned_.empty()) {  // first: an emptied disk is much cheaper than a new one
      Returned returned = std::move(returned_.front());
      returned_.pop_front();
      Recycle(std::move(returned), lock);
      continue;
    }
    lock.unlock();
    auto disk = Make(size);
    lock.lock();
    if (disk) {
      spares_[size].push_back(std::move(*disk));
      continue;
    }
    // A size that cannot be made (bad size, no loop devices): stop trying it; Take
    // reports the error to the create that asks for it.
    LOG_WARN("spare disk of {} bytes: {}", size, disk.error().message);
    spares_.erase(size);
  }
}

}  // namespace isobox::runtime
