// Space on the filesystem that holds a path, for sandbox disk metrics.
#pragma once

#include <cstdint>
#include <filesystem>

namespace isobox::server {

struct DiskSpace {
  uint64_t used = 0;
  uint64_t total = 0;
};

// statfs(2) of `path`; zeros if it cannot be read (e.g. the sandbox is ending).
DiskSpace DiskSpaceOf(const std::filesystem::path& path);

}  // namespace isobox::server
