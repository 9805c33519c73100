#include "server/control/disk_usage.h"

#include <ftw.h>
#include <sys/stat.h>

namespace isobox::server {
namespace {

thread_local uint64_t total_bytes = 0;

int Add(const char*, const struct stat* st, int, struct FTW*) {
  total_bytes += static_cast<uint64_t>(st->st_blocks) * 512;
  return FTW_CONTINUE;
}

}  // namespace

uint64_t DiskUsage(const std::filesystem::path& dir) {
  total_bytes = 0;
  ::nftw(dir.c_str(), Add, 32, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL);
  return total_bytes;
}

}  // namespace isobox::server
