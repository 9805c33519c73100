// Where an HTTP/1.1 message body ends, found while its bytes pass through unchanged: a
// relay forwards the body verbatim (chunk framing included) and asks this class only how
// many of the bytes it holds belong to the body. Chunk data is opaque: it is counted, never
// looked at, so a relay may move it without reading it (splice(2)).
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

class BodyFraming {
 public:
  // A body of exactly `length` bytes (Content-Length).
  static BodyFraming Length(uint64_t length);
  // A body in the chunked transfer coding, trailers included.
  static BodyFraming Chunked();

  // Takes the bytes at the front of `input` that belong to the body and returns how many
  // they are: all of `input`, or fewer when the body ends inside it (what follows is the
  // next message). An error when the chunk framing is malformed or over its bounds; the
  // framing is then unusable.
  Result<size_t> Consume(std::string_view input);
  // Passes over `count` (at most OpaqueAhead()) bytes of chunk data without seeing them.
  void Skip(uint64_t count);

  bool Done() const { return state_ == State::kDone; }
  // How many of the next bytes are body data that needs no scanning (for a Content-Length
  // body, the rest of it; for a chunked one, the rest of the current chunk).
  uint64_t OpaqueAhead() const { return state_ == State::kData ? left_ : 0; }
  // Bytes of body data (without chunk framing) consumed or skipped so far.
  uint64_t DataBytes() const { return data_bytes_; }

  // Bounds of the framing lines: a chunk-size line with its extensions, and all trailer
  // fields together.
  static constexpr size_t kMaxSizeLine = 4096;
  static constexpr size_t kMaxTrailers = 64 * 1024;

 private:
  enum class State {
    kSize,         // hex digits of a chunk size
    kExtension,    // after the size: BWS, ";name=value" ... up to CR
    kSizeLf,       // LF ending the chunk-size line
    kData,         // left_ bytes of chunk data (or of a Content-Length body)
    kDataCr,       // CR after chunk data
    kDataLf,       // LF after chunk data
    kTrailer,      // start of a trailer line, or the final CRLF
    kTrailerText,  // inside a trailer field line, up to CR
    kTrailerLf,    // LF ending a trailer field line
    kEndLf,        // LF of the final CRLF
    kDone,
  };

  explicit BodyFraming(State state, uint64_t left) : state_(state), left_(left) {}
  // One framing byte (outside chunk data).
  Result<void> Step(char c);
  Result<void> Fail(std::string_view what) const;

  State state_;
  uint64_t left_ = 0;  // kData: bytes of data still to come; kSize: the size so far
  bool chunked_ = false;
  size_t digits_ = 0;    // hex digits of the current chunk size
  size_t line_ = 0;      // bytes of the current chunk-size line
  size_t trailers_ = 0;  // bytes of trailer fields so far
  uint64_t data_bytes_ = 0;
};

}  // namespace isobox::protocol
