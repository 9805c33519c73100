// The host-derived base layer: everything of a sandbox's root filesystem except /usr
// (which is the host's /usr, mounted as its own read-only layer under a mask: usr_mask.h).
// Built per state directory in milliseconds, with nothing downloaded, and again when the
// host files it is made from change.
#pragma once

#include <filesystem>

#include "base/result.h"

namespace isobox::runtime {

// The uid/gid of the unprivileged sandbox user ("user", home /home/user).
inline constexpr unsigned kSandboxUserId = 1000;

// Builds the base layer into `dir` (which must not exist) from the host at `host_root`
// ("/" but in tests): the allowlisted part of its /etc (etc_allowlist.h) and generated
// account files: root, a few system accounts and `user` (uid 1000). Mount points (/usr,
// /proc, /dev, /tmp, /.isobox), the host's top-level links into /usr (/bin -> usr/bin
// ...) and /home/user (its dotfiles from the copied /etc/skel) are included.
Status BuildBaseLayer(const std::filesystem::path& dir,
                      const std::filesystem::path& host_root = "/");

// A description of everything BuildBaseLayer reads from the host, and of the layout
// version: each allowlisted /etc entry's path, type, mode, owner, size, modification and
// change times and link target, and the top-level links. When it is unchanged, a new
// build would make the same layer; a stored layer keeps its hash beside it and is rebuilt
// when the hash differs. A few hundred lstat calls.
Result<std::string> BaseLayerSources(const std::filesystem::path& host_root = "/");

// A version string of the layer layout (part of BaseLayerSources).
const char* BaseLayerVersion();

}  // namespace isobox::runtime
