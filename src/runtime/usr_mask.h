// The /usr mask: sandboxes see the host's /usr through an idmapped read-only mount, where
// host root is sandbox root, so a file only host root (or a group) may read would be
// readable inside. The mask is a read-only layer of overlayfs whiteouts put above /usr
// in each sandbox's /usr overlay: every path under /usr that others may not read (a file
// without o+r, a directory without o+x) does not exist inside at all.
//
// Scanning /usr takes about a second (~170k entries); UsrScanKey is a cheap key for
// keeping a scan (server/control/usr_masks.h caches it and rescans in the background).
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "base/result.h"

namespace isobox::runtime {

// The paths below `usr` (relative, sorted) a sandbox must not see: files, devices, fifos
// and sockets without o+r, directories without o+x (not descended into). Symlinks are
// never hidden: they resolve inside the sandbox. Scans `usr`'s own filesystem as the
// overlay sees it (a non-recursive clone of its mount: the overlay does not cross mounts
// in a lower layer). kCanceled once `stop` becomes true.
Result<std::vector<std::string>> ScanUsr(const std::filesystem::path& usr,
                                         const std::atomic<bool>* stop = nullptr);

// A description of what usually changes when /usr does: `usr`'s own directory and its
// subdirectories (a file made there), dpkg's status file and info directory (packages
// installed or removed) and every entry under usr/local (files put there by hand: all of
// it is stat'ed, it is small). A change elsewhere under /usr that dpkg does not see (a
// private file put deep into usr/share by hand) does not change it: a full ScanUsr does.
Result<std::string> UsrScanKey(const std::filesystem::path& usr,
                               const std::filesystem::path& dpkg_dir = "/var/lib/dpkg");

// What the mask also hides from every sandbox, whatever the modes: Debian's
// lib/python3.*/EXTERNALLY-MANAGED markers, so that pip installs into the sandbox (its own
// writable layer, or --user) as in E2B's sandboxes instead of refusing (PEP 668).
std::vector<std::string> SandboxWhiteouts(const std::filesystem::path& usr);

// Where the mask's bin/sudo points: the sandbox's sudo in the agent's directory.
inline constexpr const char* kSandboxSudo = "/.isobox/isobox-sudo";

// Builds the mask layer into `dir` (which must not exist): a whiteout (a 0/0 character
// device) at each of `hidden` (ScanUsr's paths) and the directories above them with the
// mode, owner and times of `usr`'s. A hidden path whose directory is no longer one on
// the host is left out (nothing to hide). kInvalidArgument for a path that is absolute,
// empty or has "." or ".." in it.
Status BuildUsrMask(const std::filesystem::path& usr, const std::vector<std::string>& hidden,
                    const std::filesystem::path& dir);

}  // namespace isobox::runtime
