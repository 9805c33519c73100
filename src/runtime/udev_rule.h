// A udev rule that keeps the host's udev away from Isobox's loop devices: those of the disk
// pool and of every sandbox's disk (runtime/disk_pool.h, runtime/disk.h).
//
// On a host with udev (systemd-udevd), every loop device that is attached raises a
// "change" event, and Debian 12's rules then probe it: blkid reads what is on it (what a
// sandbox wrote, on a sandbox's disk) and publishes it (/dev/disk/by-uuid, by-label),
// mdadm --incremental and LVM's pvscan act on RAID members and physical volumes blkid
// found, and systemd makes a device unit of each. The rule marks every loop device of the
// state directory (the disk pool's, each disk's) so that none of this runs:
//   UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG=1   60-persistent-storage.rules: no blkid,
//                                                  no /dev/disk links (systemd >= 246)
//   SYSTEMD_READY=0                                no device unit; 64-md-raid-assembly and
//                                                  64-btrfs.rules skip the device
//   DM_UDEV_DISABLE_OTHER_RULES_FLAG=1             69-lvm.rules skips the device
//   UDISKS_IGNORE=1                                desktops do not show it
//   OPTIONS+="nowatch"                             no re-probe when a writer closes it
// (md, LVM and btrfs act only on what blkid found, so without blkid they never would; the
// flags make that explicit.) The rule lives in /run/udev/rules.d, sorts between
// 60-block.rules (whose "watch" it overrides) and 60-persistent-storage.rules, and goes
// at reboot with the loop devices it is about.
#pragma once

#include <filesystem>
#include <string>

#include "base/result.h"

namespace isobox::runtime {

inline constexpr const char* kUdevRulesDir = "/run/udev/rules.d";

// The directory at the root of the disk pool's filesystem (runtime/disk_pool.h) that
// holds the disk images of `state_dir`: "isobox-disks-<hash of the state directory>". The
// pool is a detached mount, so the kernel names a disk's backing file from its root
// ("/isobox-disks-<hash>/#12 (deleted)"), and the rule matches that name.
std::string PoolImagesDirName(const std::filesystem::path& state_dir);

// The rule's text for `state_dir` (an absolute path without glob or quote characters): one
// line for loop devices of files under the state directory (the pool's image; the disks
// where there is no pool), one for the disks in the pool.
Result<std::string> UdevRuleText(const std::filesystem::path& state_dir);

// The rule's file for `state_dir` in `rules_dir`: one per state directory, so that
// daemons with their own state directories (tests run several) keep their own.
std::filesystem::path UdevRulePath(const std::filesystem::path& state_dir,
                                   const std::filesystem::path& rules_dir = kUdevRulesDir);

// Whether udevd runs on this host (its control socket, /run/udev/control, exists).
bool UdevRuns();

// Writes the rule (atomically) before the first loop device is attached, and when udevd
// runs (its control socket exists) has it reload its rules at once (`udevadm control
// --reload`; udevd itself looks for new rules at most every 3 s).
Status InstallUdevRule(const std::filesystem::path& state_dir,
                       const std::filesystem::path& rules_dir = kUdevRulesDir);

// Removes the rule (when no loop device of the state directory is left).
void RemoveUdevRule(const std::filesystem::path& state_dir,
                    const std::filesystem::path& rules_dir = kUdevRulesDir);

}  // namespace isobox::runtime
