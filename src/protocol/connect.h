// Connect protocol framing (https://connectrpc.com/docs/protocol): the 5-byte envelope
// of streaming calls and the JSON error bodies. The decoder takes untrusted bytes in
// arbitrary pieces and never buffers more than one bounded message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

inline constexpr uint8_t kEnvelopeCompressed = 0x01;
inline constexpr uint8_t kEnvelopeEndStream = 0x02;
inline constexpr size_t kEnvelopeHeaderSize = 5;
inline constexpr size_t kMaxConnectMessage = 4 << 20;

struct Envelope {
  uint8_t flags = 0;
  std::string message;
};

// [flags][length, 4 bytes big-endian][message]
std::string EncodeEnvelope(uint8_t flags, std::string_view message);

// Incremental decoder. Feed() any split of the stream; complete envelopes come out of
// Next() in order. A message longer than max_message or a flag outside allowed_flags is
// an error (kResourceExhausted / kInvalidArgument) and poisons the decoder.
class EnvelopeDecoder {
 public:
  explicit EnvelopeDecoder(size_t max_message = kMaxConnectMessage, uint8_t allowed_flags = 0)
      : max_message_(max_message), allowed_flags_(allowed_flags) {}

  Status Feed(std::string_view data);
  std::optional<Envelope> Next();
  // True when no partial envelope is buffered (the stream may end here).
  bool AtBoundary() const { return header_fill_ == 0 && !in_message_; }

 private:
  Status StartMessage();

  size_t max_message_;
  uint8_t allowed_flags_;
  uint8_t header_[kEnvelopeHeaderSize] = {};
  size_t header_fill_ = 0;
  bool in_message_ = false;
  size_t message_size_ = 0;
  Envelope current_;
  std::deque<Envelope> ready_;
  std::optional<Error> failed_;
};

// Decodes a request body that must hold exactly one envelope with flags 0.
Result<std::string> DecodeSingleEnvelope(std::string_view body,
                                         size_t max_message = kMaxConnectMessage);

// End-stream message: "{}" on success, else {"error":{"code":"..","message":".."}}.
std::string EndStreamJson(const Error* error);

// Body of a failed unary call: {"code":"not_found","message":".."}.
std::string UnaryErrorJson(const Error& error);

}  // namespace isobox::protocol
