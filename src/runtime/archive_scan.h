// A streaming, header-level check of an untrusted tar archive (plain, gzip or zstd) before
// anything of it is unpacked: the layer blobs of a pulled image (unpacked by umoci later)
// and the COPY contexts the SDK uploads (extracted by the build later).
//
// The scan reads the whole stream once, decompressed by libarchive (gzip or zstd; no other
// filter, so no external decompressor is ever run), with two tar readers side by side
// (archive_stream.h): libarchive's, whose entries are checked, and a strict one that reads
// as Go's archive/tar does (tar_walker.h; umoci's reader) and refuses every header the two
// could read differently. Their entries must match one by one, so what is checked here is
// what umoci unpacks. The first entry that breaks a rule or a limit is refused:
//
//   kInvalidArgument   a non-tar or corrupt stream (libarchive's or the walker's message),
//                      a header outside the strict subset (sparse files, pax global
//                      headers, signed or NUL-padded sizes, a NUL in a pax name, data on a
//                      link, directory or device entry), a character or block device, a
//                      fifo or socket (kUpload), an empty, absolute or over-long name, a
//                      `..` component, a hard link to an absolute or `..` target or
//                      (kUpload) to a name that is not an earlier file of the archive, a
//                      whiteout naming no file (kImageLayer: `.wh.`, `.wh..`)
//   kResourceExhausted "archive has more than N entries", "archive expands to more than N
//                      bytes" (the sum of the entries' declared sizes, checked at each
//                      header, before its data), "archive expands more than Nx its
//                      compressed size" (checked as the stream is read, once more than
//                      1 MiB has come out of the decompressor)
//   an errno error     reading the fd failed
//
// The unpacker must still keep its writes inside its target (umoci does, securejoin) and
// the unpacked tree is checked again after (devices, owners): the scan is the first line.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace isobox::runtime {

struct ArchiveLimits {
  uint64_t max_entries = 1'000'000;
  uint64_t max_bytes = 16ull << 30;  // sum of the entries' declared sizes
  uint64_t max_ratio = 1000;         // uncompressed stream bytes / compressed bytes read
  size_t max_path = 4096;            // bytes of an entry's name or hard link target
};

struct ArchiveStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;        // sum of the entries' declared sizes
  uint64_t whiteouts = 0;    // kImageLayer: `.wh.<name>` entries
  uint64_t opaque_dirs = 0;  // kImageLayer: `.wh..wh..opq` entries
};

enum class ArchiveKind {
  kImageLayer,  // an OCI image layer: `.wh.` names are whiteouts, fifos are allowed
  kUpload,      // a COPY context uploaded by the SDK: regular files, directories, links
};

// Below this many uncompressed bytes an archive is never refused for its ratio: a small
// file of zeros compresses more than 1000x.
inline constexpr uint64_t kArchiveRatioFloor = 1 << 20;

// Scans the archive read from `fd`, from its current offset to the end of the tar stream.
// kUpload keeps the names of the archive's files to check hard links against them: up to
// max_entries * max_path bytes, so pick upload limits with that in mind.
Result<ArchiveStats> ScanArchive(int fd, ArchiveKind kind, const ArchiveLimits& limits);

}  // namespace isobox::runtime
