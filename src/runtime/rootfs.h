// The host-derived base layer: everything of a sandbox's root filesystem except /usr
// (which is the host's /usr, mounted as its own read-only layer). Built once per state
// directory in milliseconds, with nothing downloaded.
#pragma once

#include <filesystem>

#include "base/result.h"

namespace isobox::runtime {

// The uid/gid of the unprivileged sandbox user ("user", home /home/user).
inline constexpr unsigned kSandboxUserId = 1000;

// Builds the base layer into `dir` (which must not exist) from the host's /etc and
// generated account files: root, a few system accounts and `user` (uid 1000).
// Mount points (/usr, /proc, /dev, /tmp, /.isobox) and the usual top-level symlinks
// (/bin -> usr/bin ...) are included.
Status BuildBaseLayer(const std::filesystem::path& dir);

// A version string of the layer layout; a stored layer with another version is rebuilt.
const char* BaseLayerVersion();

}  // namespace isobox::runtime
