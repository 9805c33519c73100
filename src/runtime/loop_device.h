// Loop devices and ext4 for Isobox's disks (runtime/disk.h) and their pool
// (runtime/disk_pool.h): attaching a file to a free loop device, finding the loop device
// a file is attached to, and running mke2fs.
//
// Every loop device Isobox makes is attached without LO_FLAGS_PARTSCAN: the kernel never
// reads a partition table from what a sandbox wrote. The host's udev is told not to probe
// them either (runtime/udev_rule.h).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

struct LoopDevice {
  UniqueFd fd;
  std::string path;  // /dev/loopN
};

// Attaches `backing` to a free loop device with `flags` (LO_FLAGS_*; LO_FLAGS_PARTSCAN is
// refused). With LO_FLAGS_AUTOCLEAR the device detaches itself once nothing holds it.
Result<LoopDevice> AttachLoop(int backing, uint32_t flags);

// The loop device that `file` (by device and inode) is attached to, opened (which keeps
// an autoclearing device attached while the fd is open); nullopt if none is.
Result<std::optional<LoopDevice>> FindLoop(const std::filesystem::path& file);

// The sysfs directory of a loop device ("/sys/block/loopN").
std::filesystem::path LoopSysDir(const LoopDevice& loop);

// Runs the host tool `name` (from /usr/sbin, /sbin, /usr/bin or /bin) with `args`, stdin
// and stdout on /dev/null, and waits for it; an error names its exit status. The tools
// Isobox runs: mke2fs (e2fsprogs) and, where udevd runs, udevadm.
Status RunTool(const std::string& name, const std::vector<std::string>& args);

// RunTool("mke2fs", args).
inline Status RunMke2fs(const std::vector<std::string>& args) { return RunTool("mke2fs", args); }

}  // namespace isobox::runtime
