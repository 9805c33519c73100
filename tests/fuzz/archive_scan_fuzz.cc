// The pre-unpack scan of image layers and uploads (runtime/archive_scan.h): both come from
// untrusted sources (a registry, the SDK). The input is the archive stream itself, plain,
// gzip or zstd; both kinds are scanned with small limits so each run stays fast.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "runtime/archive_scan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz-archive", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) {
    std::abort();
  }
  const isobox::runtime::ArchiveLimits limits{
      .max_entries = 64, .max_bytes = 1 << 20, .max_ratio = 100, .max_path = 256};
  for (auto kind :
       {isobox::runtime::ArchiveKind::kImageLayer, isobox::runtime::ArchiveKind::kUpload}) {
    if (lseek(fd, 0, SEEK_SET) != 0) std::abort();
    auto stats = isobox::runtime::ScanArchive(fd, kind, limits);
    if (stats && (stats->entries > limits.max_entries || stats->bytes > limits.max_bytes ||
                  stats->whiteouts + stats->opaque_dirs > stats->entries)) {
      std::abort();
    }
  }
  return 0;
}
