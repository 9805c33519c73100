#include "protocol/connect.h"

#include <boost/json.hpp>

#include "protocol/status.h"

namespace isobox::protocol {

std::string EncodeEnvelope(uint8_t flags, std::string_view message) {
  std::string out;
  out.reserve(kEnvelopeHeaderSize + message.size());
  auto size = static_cast<uint32_t>(message.size());
  out += static_cast<char>(flags);
  out += static_cast<char>(size >> 24);
  out += static_cast<char>((size >> 16) & 0xff);
  out += static_cast<char>((size >> 8) & 0xff);
  out += static_cast<char>(size & 0xff);
  out += message;
  return out;
}

Status EnvelopeDecoder::StartMessage() {
  uint8_t flags = header_[0];
  if ((flags & ~allowed_flags_) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "envelope: unsupported flags 0x{:02x}", flags);
  }
  size_t size = static_cast<size_t>(header_[1]) << 24 | static_cast<size_t>(header_[2]) << 16 |
                static_cast<size_t>(header_[3]) << 8 | static_cast<size_t>(header_[4]);
  if (size > max_message_) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "envelope: message of {} bytes exceeds the limit of {}", size, max_message_);
  }
  current_ = Envelope{flags, {}};
  current_.message.reserve(size);
  message_size_ = size;
  in_message_ = true;
  header_fill_ = 0;
  return Ok();
}

Status EnvelopeDecoder::Feed(std::string_view data) {
  if (failed_) return tl::unexpected<Error>(*failed_);
  while (true) {
    if (in_message_) {
      size_t take = std::min(data.size(), message_size_ - current_.message.size());
      current_.message.append(data.substr(0, take));
      data.remove_prefix(take);
      if (current_.message.size() < message_size_) return Ok();
      ready_.push_back(std::move(current_));
      in_message_ = false;
      continue;
    }
    if (data.empty()) return Ok();
    size_t take = std::min(data.size(), kEnvelopeHeaderSize - header_fill_);
    data.copy(reinterpret_cast<char*>(header_) + header_fill_, take);
    header_fill_ += take;
    data.remove_prefix(take);
    if (header_fill_ < kEnvelopeHeaderSize) return Ok();
    if (auto status = StartMessage(); !status) {
      failed_ = status.error();
      return status;
    }
  }
}

std::optional<Envelope> EnvelopeDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  Envelope envelope = std::move(ready_.front());
  ready_.pop_front();
  return envelope;
}

Result<std::string> DecodeSingleEnvelope(std::string_view body, size_t max_message) {
  EnvelopeDecoder decoder(max_message);
  RETURN_IF_ERROR(decoder.Feed(body));
  auto envelope = decoder.Next();
  if (!envelope || !decoder.AtBoundary()) {
    return MakeError(ErrorCode::kInvalidArgument, "envelope: truncated request");
  }
  if (decoder.Next()) {
    return MakeError(ErrorCode::kInvalidArgument, "envelope: more than one request message");
  }
  return std::move(envelope->message);
}

std::string EndStreamJson(const Error* error) {
  if (error == nullptr) return "{}";
  boost::json::object inner;
  inner["code"] = ConnectCodeName(error->code);
  inner["message"] = error->message;
  boost::json::object outer;
  outer["error"] = std::move(inner);
  return boost::json::serialize(outer);
}

std::string UnaryErrorJson(const Error& error) {
  boost::json::object body;
  body["code"] = ConnectCodeName(error.code);
  body["message"] = error.message;
  return boost::json::serialize(body);
}

}  // namespace isobox::protocol
