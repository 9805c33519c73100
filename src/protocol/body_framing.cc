#include "protocol/body_framing.h"

#include <algorithm>

namespace isobox::protocol {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

BodyFraming BodyFraming::Length(uint64_t length) {
  return BodyFraming(length == 0 ? State::kDone : State::kData, length);
}

BodyFraming BodyFraming::Chunked() {
  BodyFraming framing(State::kSize, 0);
  framing.chunked_ = true;
  return framing;
}

Result<void> BodyFraming::Fail(std::string_view what) const {
  return MakeError(ErrorCode::kInvalidArgument, "malformed chunked body: {}", what);
}

Result<void> BodyFraming::Step(char c) {
  switch (state_) {
    case State::kSize:
    case State::kExtension:
      if (++line_ > kMaxSizeLine) return Fail("chunk-size line too long");
      if (c == '\r') {
        if (digits_ == 0) return Fail("chunk size expected");
        state_ = State::kSizeLf;
      } else if (state_ == State::kExtension) {
        if (c == '\n') return Fail("bare LF in chunk extension");
      } else if (int value = HexValue(c); value >= 0) {
        // 15 hex digits stay below 2^60: no overflow.
        if (++digits_ > 15) return Fail("chunk size too large");
        left_ = left_ * 16 + static_cast<uint64_t>(value);
      } else if (digits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
        state_ = State::kExtension;
      } else {
        return Fail("bad character in chunk size");
      }
      return Ok();
    case State::kSizeLf:
      if (c != '\n') return Fail("CR without LF after chunk size");
      digits_ = 0;
      line_ = 0;
      state_ = left_ == 0 ? State::kTrailer : State::kData;
      return Ok();
    case State::kDataCr:
      if (c != '\r') return Fail("chunk data longer than its size");
      state_ = State::kDataLf;
      return Ok();
    case State::kDataLf:
      if (c != '\n') return Fail("CR without LF after chunk data");
      state_ = State::kSize;
      return Ok();
    case State::kTrailer:
    case State::kTrailerText:
      if (c == '\r') {
        state_ = state_ == State::kTrailer ? State::kEndLf : State::kTrailerLf;
        return Ok();
      }
      if (c == '\n') return Fail("bare LF in trailer");
      if (++trailers_ > kMaxTrailers) return Fail("trailers too long");
      state_ = State::kTrailerText;
      return Ok();
    case State::kTrailerLf:
      if (c != '\n') return Fail("CR without LF in trailer");
      state_ = State::kTrailer;
      return Ok();
    case State::kEndLf:
      if (c != '\n') return Fail("CR without LF at the end");
      state_ = State::kDone;
      return Ok();
    case State::kData:
    case State::kDone:
      break;
  }
  return Fail("internal state");
}

void BodyFraming::Skip(uint64_t count) {
  count = std::min(count, OpaqueAhead());
  left_ -= count;
  data_bytes_ += count;
  if (state_ == State::kData && left_ == 0) state_ = chunked_ ? State::kDataCr : State::kDone;
}

Result<size_t> BodyFraming::Consume(std::string_view input) {
  size_t at = 0;
  while (at < input.size() && state_ != State::kDone) {
    if (state_ == State::kData) {
      uint64_t take = std::min<uint64_t>(left_, input.size() - at);
      Skip(take);
      at += static_cast<size_t>(take);
      continue;
    }
    if (auto stepped = Step(input[at]); !stepped) return tl::unexpected(stepped.error());
    ++at;
  }
  return at;
}

}  // namespace isobox::protocol
