// Streaming gzip (RFC 1952) through zlib, for /files bodies: a compressor for downloads
// and a decompressor for uploads. Both work piece by piece with a fixed output buffer,
// so memory stays bounded whatever the size (or the compression ratio) of the data.
#pragma once

#include <zlib.h>

#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::envd {

// Receives output pieces; an error stops the stream and is returned to the caller.
using GzipSink = std::function<Status(std::string_view)>;

class GzipCompressor {
 public:
  // Level 1 (zlib's fastest): downloads are CPU-bound otherwise.
  explicit GzipCompressor(int level = 1);
  ~GzipCompressor();
  GzipCompressor(const GzipCompressor&) = delete;
  GzipCompressor& operator=(const GzipCompressor&) = delete;

  Status Write(std::string_view data, const GzipSink& sink);
  // Flushes the rest and writes the gzip trailer.
  Status Finish(const GzipSink& sink);

 private:
  Status Run(int flush, const GzipSink& sink);
  z_stream stream_{};
  bool ready_ = false;
  std::string out_;
};

class GzipDecompressor {
 public:
  GzipDecompressor();
  ~GzipDecompressor();
  GzipDecompressor(const GzipDecompressor&) = delete;
  GzipDecompressor& operator=(const GzipDecompressor&) = delete;

  // Corrupt input is kInvalidArgument. Bytes after the end of the gzip member (another
  // member, as `cat a.gz b.gz` makes) start a new member, as gzip(1) and Go read them.
  Status Write(std::string_view data, const GzipSink& sink);
  // kInvalidArgument if the stream ended inside a member (truncated upload).
  Status Finish();

 private:
  z_stream stream_{};
  bool ready_ = false;
  bool in_member_ = false;  // between a member's first byte and its trailer
  std::string out_;
};

}  // namespace isobox::envd
