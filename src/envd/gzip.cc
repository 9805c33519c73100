#include "envd/gzip.h"

namespace isobox::envd {
namespace {

constexpr size_t kOutChunk = 64 << 10;
constexpr int kGzipWindowBits = 15 + 16;  // zlib: +16 selects the gzip wrapper

}  // namespace

GzipCompressor::GzipCompressor(int level) : out_(kOutChunk, '\0') {
  ready_ = deflateInit2(&stream_, level, Z_DEFLATED, kGzipWindowBits, 8, Z_DEFAULT_STRATEGY) ==
           Z_OK;
}

GzipCompressor::~GzipCompressor() {
  if (ready_) deflateEnd(&stream_);
}

Status GzipCompressor::Run(int flush, const GzipSink& sink) {
  while (true) {
    stream_.next_out = reinterpret_cast<Bytef*>(out_.data());
    stream_.avail_out = static_cast<uInt>(out_.size());
    int rc = deflate(&stream_, flush);
    if (rc == Z_STREAM_ERROR) return MakeError(ErrorCode::kInternal, "gzip: deflate failed");
    size_t produced = out_.size() - stream_.avail_out;
    if (produced > 0) RETURN_IF_ERROR(sink(std::string_view(out_.data(), produced)));
    if (flush == Z_FINISH ? rc == Z_STREAM_END : stream_.avail_out != 0) return Ok();
  }
}

Status GzipCompressor::Write(std::string_view data, const GzipSink& sink) {
  if (!ready_) return MakeError(ErrorCode::kInternal, "gzip: deflateInit failed");
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream_.avail_in = static_cast<uInt>(data.size());
  return Run(Z_NO_FLUSH, sink);
}

Status GzipCompressor::Finish(const GzipSink& sink) {
  if (!ready_) return MakeError(ErrorCode::kInternal, "gzip: deflateInit failed");
  stream_.next_in = nullptr;
  stream_.avail_in = 0;
  return Run(Z_FINISH, sink);
}

GzipDecompressor::GzipDecompressor() : out_(kOutChunk, '\0') {
  ready_ = inflateInit2(&stream_, kGzipWindowBits) == Z_OK;
}

GzipDecompressor::~GzipDecompressor() {
  if (ready_) inflateEnd(&stream_);
}

Status GzipDecompressor::Write(std::string_view data, const GzipSink& sink) {
  if (!ready_) return MakeError(ErrorCode::kInternal, "gzip: inflateInit failed");
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream_.avail_in = static_cast<uInt>(data.size());
  while (stream_.avail_in > 0) {
    in_member_ = true;
    stream_.next_out = reinterpret_cast<Bytef*>(out_.data());
    stream_.avail_out = static_cast<uInt>(out_.size());
    int rc = inflate(&stream_, Z_NO_FLUSH);
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR || rc == Z_MEM_ERROR) {
      return MakeError(ErrorCode::kInvalidArgument, "gzip: invalid compressed data");
    }
    size_t produced = out_.size() - stream_.avail_out;
    if (produced > 0) RETURN_IF_ERROR(sink(std::string_view(out_.data(), produced)));
    if (rc == Z_STREAM_END) {
      in_member_ = false;
      if (inflateReset(&stream_) != Z_OK) {
        return MakeError(ErrorCode::kInternal, "gzip: inflateReset failed");
      }
    } else if (rc == Z_BUF_ERROR && produced == 0) {
      break;  // needs more input (cannot happen with avail_in > 0, but never spin)
    }
  }
  return Ok();
}

Status GzipDecompressor::Finish() {
  if (!ready_) return MakeError(ErrorCode::kInternal, "gzip: inflateInit failed");
  if (in_member_) return MakeError(ErrorCode::kInvalidArgument, "gzip: unexpected EOF");
  return Ok();
}

}  // namespace isobox::envd
