// The stream archive_scan.h reads: an fd, through libarchive's gzip or zstd decompressor
// (or none), into two tar readers that see the same bytes in one pass: the strict
// TarWalker (Go's reading, tar_walker.h) and libarchive's tar reader, whose entries the
// scan checks. Both limits on the stream itself (the expansion ratio) are enforced here, as
// the bytes flow, so a decompression bomb is stopped inside libarchive's data skipping.
#pragma once

#include <archive.h>

#include <memory>
#include <optional>
#include <string_view>

#include "base/result.h"
#include "runtime/archive_scan.h"
#include "runtime/tar_walker.h"

namespace isobox::runtime {

class ArchiveStream {
 public:
  // Opens the stream read from `fd` (from its current offset) and libarchive's tar reader on
  // it, which reads the first header block. Refuses a stream that is not a plain, gzip or
  // zstd tar.
  static Result<std::unique_ptr<ArchiveStream>> Open(int fd, const ArchiveLimits& limits);

  ~ArchiveStream();
  ArchiveStream(const ArchiveStream&) = delete;
  ArchiveStream& operator=(const ArchiveStream&) = delete;

  // libarchive's tar reader: next header, data blocks.
  struct archive* tar() const {
    return tar_;
  }
  // The strict reader of the same bytes, ahead of tar() by libarchive's read-ahead.
  TarWalker& walker() { return walker_; }

  // Why a tar() call failed: a read error of the fd, the walker's or a limit's refusal, or
  // libarchive's message (the decompressor's or the tar reader's) after `context`.
  Error Failure(std::string_view context) const;

 private:
  explicit ArchiveStream(int fd, const ArchiveLimits& limits);
  Error OpenFailure(struct archive* failed) const;

  static la_ssize_t ReadCompressed(struct archive*, void* client, const void** buffer);
  static la_ssize_t ReadUncompressed(struct archive*, void* client, const void** buffer);
  Status Pass(const void* block, size_t size);

  int fd_;
  ArchiveLimits limits_;
  std::unique_ptr<char[]> buffer_;
  uint64_t compressed_ = 0;    // bytes read from fd_
  uint64_t uncompressed_ = 0;  // bytes out of the decompressor
  int read_errno_ = 0;
  bool end_ = false;
  std::optional<Error> refused_;  // the walker's or a limit's
  struct archive* decompressor_ = nullptr;
  struct archive* tar_ = nullptr;
  TarWalker walker_;
};

}  // namespace isobox::runtime
