#include "runtime/archive_stream.h"

#include <unistd.h>

#include <cerrno>
#include <string>

namespace isobox::runtime {
namespace {

constexpr size_t kReadBufferSize = 128 << 10;
// libarchive's ARCHIVE_ERRNO_FILE_FORMAT on Linux (archive_platform.h, not installed): the
// errno of "Unrecognized archive format".
constexpr int kFileFormatErrno = EILSEQ;

}  // namespace

ArchiveStream::ArchiveStream(int fd, const ArchiveLimits& limits)
    : fd_(fd), limits_(limits), buffer_(std::make_unique<char[]>(kReadBufferSize)) {}

ArchiveStream::~ArchiveStream() {
  if (tar_ != nullptr) archive_read_free(tar_);
  if (decompressor_ != nullptr) archive_read_free(decompressor_);
}

Result<std::unique_ptr<ArchiveStream>> ArchiveStream::Open(int fd, const ArchiveLimits& limits) {
  std::unique_ptr<ArchiveStream> stream(new ArchiveStream(fd, limits));
  stream->decompressor_ = archive_read_new();
  stream->tar_ = archive_read_new();
  if (stream->decompressor_ == nullptr || stream->tar_ == nullptr) {
    return MakeError(ErrorCode::kResourceExhausted, "archive_read_new failed");
  }
  // SECURITY: only the gzip and zstd decompressors, and tar. Every other filter and format
  // is attack surface we do not need, and some filters (lrzip, grzip, lzop without liblzo,
  // zstd without libzstd) run an external program: ARCHIVE_WARN from a support_filter
  // call means exactly that, and is refused. "raw" hands the decompressed bytes over
  // as they are.
  struct archive* d = stream->decompressor_;
  if (archive_read_support_filter_gzip(d) != ARCHIVE_OK ||
      archive_read_support_filter_zstd(d) != ARCHIVE_OK ||
      archive_read_support_format_raw(d) != ARCHIVE_OK ||
      archive_read_support_format_tar(stream->tar_) != ARCHIVE_OK) {
    return MakeError(ErrorCode::kInternal, "libarchive lacks built-in tar, gzip or zstd support");
  }
  struct archive_entry* raw;
  // Opening the decompressor picks the filter, opening the tar reader reads the first
  // header block and picks the format ("raw" takes any stream but an empty one).
  if (archive_read_open(d, stream.get(), nullptr, ReadCompressed, nullptr) != ARCHIVE_OK ||
      archive_read_next_header(d, &raw) != ARCHIVE_OK) {
    return tl::unexpected(stream->OpenFailure(d));
  }
  if (archive_read_open(stream->tar_, stream.get(), nullptr, ReadUncompressed, nullptr) !=
      ARCHIVE_OK) {
    return tl::unexpected(stream->OpenFailure(stream->tar_));
  }
  return stream;
}

Error ArchiveStream::OpenFailure(struct archive* failed) const {
  bool unrecognized = !refused_ && read_errno_ == 0 && archive_errno(failed) == kFileFormatErrno;
  return Failure(unrecognized ? "archive is not a tar, tar.gz or tar.zst stream" : "archive");
}

Error ArchiveStream::Failure(std::string_view context) const {
  if (read_errno_ != 0) return ErrnoError(read_errno_, "read archive").value();
  if (refused_) return *refused_;
  // The decompressor's message was copied into the tar reader's (ReadUncompressed).
  struct archive* failed = archive_error_string(tar_) != nullptr ? tar_ : decompressor_;
  const char* message = archive_error_string(failed);
  return Error{ErrorCode::kInvalidArgument, 0,
               fmt::format("{}: {}", context, message != nullptr ? message : "unknown error")};
}

la_ssize_t ArchiveStream::ReadCompressed(struct archive* archive, void* client,
                                         const void** buffer) {
  auto* stream = static_cast<ArchiveStream*>(client);
  ssize_t n;
  do {
    n = ::read(stream->fd_, stream->buffer_.get(), kReadBufferSize);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    stream->read_errno_ = errno;
    archive_set_error(archive, errno, "read");
    return -1;
  }
  stream->compressed_ += static_cast<uint64_t>(n);
  *buffer = stream->buffer_.get();
  return n;
}

la_ssize_t ArchiveStream::ReadUncompressed(struct archive* tar, void* client, const void** buffer) {
  auto* stream = static_cast<ArchiveStream*>(client);
  if (stream->end_) return 0;
  const void* block;
  size_t size;
  la_int64_t offset;
  int r = archive_read_data_block(stream->decompressor_, &block, &size, &offset);
  if (r == ARCHIVE_EOF) {
    stream->end_ = true;
    return 0;
  }
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
    const char* message = archive_error_string(stream->decompressor_);
    archive_set_error(tar, EINVAL, "%s", message != nullptr ? message : "decompression failed");
    return -1;
  }
  if (Status passed = stream->Pass(block, size); !passed) {
    stream->refused_ = passed.error();
    archive_set_error(tar, EINVAL, "%s", passed.error().message.c_str());
    return -1;
  }
  *buffer = block;
  return static_cast<la_ssize_t>(size);
}

// Every uncompressed byte, before libarchive's tar reader sees it.
Status ArchiveStream::Pass(const void* block, size_t size) {
  uncompressed_ += size;
  // SECURITY: the expansion so far against what has been read, so that a decompression
  // bomb stops after about max_ratio times one read buffer, not after its whole output.
  uint64_t allowed;
  if (uncompressed_ > kArchiveRatioFloor &&
      !__builtin_mul_overflow(compressed_, limits_.max_ratio, &allowed) &&
      uncompressed_ > allowed) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "archive expands more than {}x its compressed size", limits_.max_ratio);
  }
  return walker_.Feed({static_cast<const char*>(block), size});
}

}  // namespace isobox::runtime
