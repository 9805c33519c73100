#include "server/control/disk_usage.h"

#include <sys/statfs.h>

namespace isobox::server {

DiskSpace DiskSpaceOf(const std::filesystem::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) < 0) return {};
  uint64_t block = static_cast<uint64_t>(st.f_bsize);
  return {.used = (st.f_blocks - st.f_bfree) * block, .total = st.f_blocks * block};
}

}  // namespace isobox::server
