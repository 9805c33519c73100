// The package database of the host-derived base layer: the base templates' /usr is the
// host's, so their dpkg database is the host's too (a copy taken when the layer is
// built), and apt and dpkg inside a sandbox know what its /usr holds. Root's
// `apt-get install` then installs into the sandbox's own writable layer.
#pragma once

#include <filesystem>
#include <string>

#include "base/result.h"

namespace isobox::runtime {

// Copies `host_root`/var/lib/dpkg into `dir`/var/lib/dpkg: hard links where the two are
// on one filesystem (dpkg replaces its files by rename, so a link keeps the content it
// had; the layer is read-only to sandboxes, which copy up what they change), copies
// otherwise. Only what others may read (the database is 0644; dpkg's lock files are not
// and are made anew by whoever takes them). Also the directories apt and dpkg expect
// (var/cache/apt/archives/partial, var/lib/apt/lists/partial, var/log/apt).
Status CopyDpkgDatabase(const std::filesystem::path& host_root, const std::filesystem::path& dir);

// What the copy depends on, for the layer's sources hash: the status file's identity.
std::string DpkgSources(const std::filesystem::path& host_root);

}  // namespace isobox::runtime
