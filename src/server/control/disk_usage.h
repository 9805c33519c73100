// Bytes used by a directory tree (allocated blocks), for sandbox disk metrics.
#pragma once

#include <cstdint>
#include <filesystem>

namespace isobox::server {

// Sums st_blocks of every entry under `dir` without following symlinks or crossing
// mount points. Unreadable entries count as 0.
uint64_t DiskUsage(const std::filesystem::path& dir);

}  // namespace isobox::server
